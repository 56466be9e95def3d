-- fetchq.doc_complete as it was before schema 20 (0004_pick.sql), under another
-- name, for the cost comparison in tests/retention.rs, completion_cost.
CREATE FUNCTION fetchq.doc_complete_schema19(queue text, subject text, payload jsonb DEFAULT NULL,
                                    lease_token uuid DEFAULT NULL, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
BEGIN
    PERFORM fetchq.payload_check(q, payload);
    EXECUTE format($q$
        UPDATE %s SET status = 3, payload = coalesce($3, payload), attempts = 0,
               iterations = iterations + 1, last_iteration = now(),
               next_iteration = '2970-01-01 00:00:00+00', lease_token = NULL
        WHERE subject = $1 AND status = 2 AND ($2::uuid IS NULL OR lease_token = $2)$q$,
        fetchq.queue_table(queue, 'docs'))
    USING subject, lease_token, payload;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'cpl', 'act'], ARRAY[1, 1, -1]::bigint[]);
    END IF;
END $$;
