-- Whether a session waits for the lock on table $2 that the rebuild's
-- session ($1) holds: a queue being dropped or truncated, a counter repair,
-- a DBA's DDL or VACUUM. Writers never wait for it (the rebuild's lock allows
-- them; autovacuum skips a locked table), so the rebuild yields to whoever
-- waits, as autovacuum does: left to run, it could in turn wait for the
-- waiter's snapshot, and the deadlock detector might cancel the drop rather
-- than the rebuild.
SELECT EXISTS (
    SELECT 1 FROM pg_locks AS l
    WHERE NOT l.granted AND l.locktype = 'relation' AND l.relation = to_regclass($2)
      AND $1 = ANY (pg_blocking_pids(l.pid))
)
