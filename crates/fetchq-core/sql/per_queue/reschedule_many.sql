-- doc_reschedule_many for one queue. $1 queue, $2 subjects, $3 lease tokens,
-- $4 absolute times (NULL: now() + $5), $5 delays, $6 payloads (NULL keeps the
-- stored one), arrays of one length. Each document is pending if due, planned
-- otherwise; `= ANY ($2)` keeps the cached plan on the primary key. Returns
-- the subjects rescheduled; the others had lost their lease.
WITH input AS (
    SELECT u.subject, u.token, coalesce(u.at, now() + coalesce(u.delay, interval '0')) AS at,
           CASE WHEN pg_column_size(u.payload) > (q).max_payload_size THEN fetchq.payload_check(q, u.payload)
                ELSE u.payload END AS payload
    FROM fetchq.queues AS q,
         unnest($2::text[], $3::uuid[], $4::timestamptz[], $5::interval[], $6::jsonb[])
         AS u(subject, token, at, delay, payload)
    WHERE q.name = $1::text
), held AS (
    SELECT d.subject, i.at, i.payload FROM {docs} AS d JOIN input AS i ON i.subject = d.subject
    WHERE d.subject = ANY ($2::text[]) AND d.status = 2 AND d.lease_token = i.token
    ORDER BY d.subject FOR UPDATE OF d
), moved AS (
    UPDATE {docs} AS d SET status = CASE WHEN held.at <= now() THEN 1 ELSE 0 END,
           next_iteration = held.at, payload = coalesce(held.payload, d.payload),
           attempts = 0, iterations = d.iterations + 1, last_iteration = now(), lease_token = NULL
    FROM held WHERE d.subject = held.subject
    RETURNING d.subject, d.status
), counted AS (
    SELECT c.n, c.pending
    FROM (SELECT count(*) AS n, count(*) FILTER (WHERE status = 1) AS pending FROM moved) AS c
), counters AS (
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1::text, v.metric, v.increment
    FROM counted AS c,
         LATERAL (VALUES ('prc', c.n), ('res', c.n), ('act', -c.n), ('pnd', c.pending), ('pln', c.n - c.pending))
         AS v(metric, increment)
    WHERE v.increment <> 0
)
SELECT subject::text FROM moved
