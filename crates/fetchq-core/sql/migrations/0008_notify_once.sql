-- fetchq schema 8: at most one wake-up notification in flight per queue.
--
-- A transaction that sends NOTIFY takes a database-wide lock at commit and
-- holds it through its WAL flush, so concurrent pushes that all notify commit
-- one at a time instead of sharing a flush (measured: 8 clients pushing single
-- documents went from 2.8k to 4.3k docs/s without notifications). Workers only
-- need the hint when they are idle, and one notification wakes them: while a
-- transaction that will notify for a queue is open, overlapping ones skip it.
-- Awake workers keep picking until the queue is empty; polling stays the
-- fallback for the rare document that slips between.
CREATE OR REPLACE FUNCTION fetchq.metric_write(queue text, metrics text[], increments bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1, u.m, u.i FROM unnest($2, $3) AS u(m, i) WHERE u.i <> 0;
    IF 'pnd' = ANY ($2)
       AND EXISTS (SELECT 1 FROM unnest($2, $3) AS u(m, i) WHERE u.m = 'pnd' AND u.i > 0)
       -- key space 0x66710001 is fetchq's notification debounce, per queue
       AND pg_try_advisory_xact_lock(1718681601, hashtext($1)) THEN
        PERFORM pg_notify('fetchq_pending', $1);
    END IF;
END $$;
