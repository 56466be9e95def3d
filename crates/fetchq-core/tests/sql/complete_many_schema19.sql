-- The client's complete_many statement as it was before schema 20 (kept for
-- the cost comparison in tests/retention.rs, completion_cost).
-- doc_complete_many for one queue. $1 queue, $2 subjects, $3 lease tokens,
-- $4 payloads (NULL keeps the stored one), arrays of one length. Rows are
-- locked in subject order (no deadlock with the process's other batches);
-- `= ANY ($2)` keeps the cached plan on the primary key.
-- Returns the subjects completed; the others had lost their lease.
WITH input AS (
    SELECT u.subject, u.token,
           CASE WHEN pg_column_size(u.payload) > (q).max_payload_size THEN fetchq.payload_check(q, u.payload)
                ELSE u.payload END AS payload
    FROM fetchq.queues AS q, unnest($2::text[], $3::uuid[], $4::jsonb[]) AS u(subject, token, payload)
    WHERE q.name = $1::text
), held AS (
    SELECT d.subject, i.payload FROM {docs} AS d JOIN input AS i ON i.subject = d.subject
    WHERE d.subject = ANY ($2::text[]) AND d.status = 2 AND d.lease_token = i.token
    ORDER BY d.subject FOR UPDATE OF d
), done AS (
    UPDATE {docs} AS d SET status = 3, payload = coalesce(held.payload, d.payload), attempts = 0,
           iterations = d.iterations + 1, last_iteration = now(),
           next_iteration = '2970-01-01 00:00:00+00', lease_token = NULL
    FROM held WHERE d.subject = held.subject
    RETURNING d.subject
), counters AS (
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1::text, v.metric, v.increment
    FROM (SELECT count(*) AS n FROM done) AS c,
         LATERAL (VALUES ('prc', c.n), ('cpl', c.n), ('act', -c.n)) AS v(metric, increment)
    WHERE v.increment <> 0
)
SELECT subject::text FROM done
