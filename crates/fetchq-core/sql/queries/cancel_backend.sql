-- Cancels the statement server process $1 runs (a rebuild yielding to a
-- waiter); a process that runs none ignores it.
SELECT pg_cancel_backend($1)
