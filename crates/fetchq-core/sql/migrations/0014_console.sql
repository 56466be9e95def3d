-- Schema 14: what the web console needs from the engine.

-- How many documents of `queue` match a filter (NULL = any; the same filters as
-- doc_list), counting at most `cap` (1 to 10,000,000): what a bulk action will
-- touch, said before it runs. `capped` is true when more than `cap` match
-- (`matched` is then `cap`). The count stops at the cap, so its cost is
-- bounded by it, never by the size of the queue.
CREATE FUNCTION fetchq.doc_count(queue text, list_status integer DEFAULT NULL, list_version integer DEFAULT NULL,
                                 subject_prefix text DEFAULT NULL, cap integer DEFAULT 100000,
                                 OUT matched bigint, OUT capped boolean)
LANGUAGE plpgsql STABLE
SET jit = off
AS $$
#variable_conflict use_variable
DECLARE
    b record;
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(cap BETWEEN 1 AND 10000000, format('cap must be 1 to 10000000, got %s', cap));
    SELECT f.lo, f.hi, f.impossible INTO b
    FROM fetchq.doc_filter_check(list_status, list_version, subject_prefix) AS f;
    capped := false;
    matched := 0;
    IF b.impossible THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s AS d WHERE %s LIMIT $7) AS c',
                   fetchq.queue_table(queue, 'docs'),
                   fetchq.doc_filter_sql(list_status, list_version, subject_prefix, NULL, b.lo IS NOT NULL))
    USING list_status, list_version, subject_prefix, NULL::text, b.lo, b.hi, cap::bigint + 1
    INTO matched;
    IF matched > cap THEN
        matched := cap;
        capped := true;
    END IF;
END $$;

-- Snapshots take the exact counters (packed values plus the writes not packed
-- yet), like every other read since schema 13: a snapshot taken right after
-- work shows that work, whether maintenance packed it or not.
CREATE OR REPLACE FUNCTION fetchq.metric_snap(queue text, whitelist jsonb DEFAULT NULL,
                                              OUT success boolean, OUT inserts integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(whitelist IS NULL OR jsonb_typeof(whitelist) = 'array', 'whitelist must be a JSON array of metric names');
    EXECUTE format($q$
        INSERT INTO %s (metric, value)
        SELECT r.metric, r.current_value FROM fetchq.metric_read($1) AS r
        WHERE $2::jsonb IS NULL OR $2 ? r.metric$q$, fetchq.queue_table(queue, 'metrics'))
    USING queue, whitelist;
    GET DIAGNOSTICS inserts = ROW_COUNT;
    success := true;
END $$;
