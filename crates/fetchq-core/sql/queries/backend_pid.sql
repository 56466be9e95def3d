-- This session's server process id.
SELECT pg_backend_pid()
