-- fetchq schema 9: the wake-up hint as a function of its own.
--
-- The client sends specialised per-queue statements for its hot paths (see
-- sql/per_queue/); they write counters straight into fetchq.metrics_writes and
-- call this when documents became pending, so the debounce rule of schema 8
-- lives in one place. metric_write now uses it too; behaviour is unchanged.

-- Sends NOTIFY fetchq_pending with the queue name unless a transaction that
-- will notify for the same queue is already open. Returns whether it notified.
CREATE FUNCTION fetchq.pending_hint(queue text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    -- key space 0x66710001 is fetchq's notification debounce, per queue
    IF pg_try_advisory_xact_lock(1718681601, hashtext($1)) THEN
        PERFORM pg_notify('fetchq_pending', $1);
        RETURN true;
    END IF;
    RETURN false;
END $$;

CREATE OR REPLACE FUNCTION fetchq.metric_write(queue text, metrics text[], increments bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1, u.m, u.i FROM unnest($2, $3) AS u(m, i) WHERE u.i <> 0;
    IF 'pnd' = ANY ($2) AND EXISTS (SELECT 1 FROM unnest($2, $3) AS u(m, i) WHERE u.m = 'pnd' AND u.i > 0) THEN
        PERFORM fetchq.pending_hint($1);
    END IF;
END $$;
