-- doc_push_many for one queue, from parallel arrays: $1 queue, $2 subjects,
-- $3 versions, $4 priorities, $5 absolute times (NULL: now() + $6), $6 delays,
-- $7 payloads (NULL: {}), $8 keys (NULL: none; schema 17). Rows are inserted in subject order, as
-- fetchq.doc_push_many does: two batches with overlapping subjects then wait
-- for each other instead of deadlocking (each insert of a subject another open
-- transaction inserted waits for it). Of repeated subjects the first in the
-- array wins (the others are dropped before the insert); subjects already in
-- the queue are skipped. Subjects and versions are checked by the client; a
-- payload over the limit raises FQ005 and nothing is written.
-- New documents, pending or planned, wake idle workers at commit through their
-- 'ent' counter row (trigger metrics_writes_wake). Returns queued_docs.
WITH q AS (
    SELECT q FROM fetchq.queues AS q WHERE q.name = $1::text
), input AS (
    SELECT DISTINCT ON (u.subject) u.subject, u.version, u.priority, u.key,
           coalesce(u.at, now() + coalesce(u.delay, interval '0')) AS at,
           CASE WHEN pg_column_size(u.payload) > (q.q).max_payload_size THEN fetchq.payload_check(q.q, u.payload)
                ELSE coalesce(u.payload, '{}'::jsonb) END AS payload
    FROM q, unnest($2::text[], $3::integer[], $4::integer[], $5::timestamptz[], $6::interval[], $7::jsonb[],
                   $8::text[])
         WITH ORDINALITY AS u(subject, version, priority, at, delay, payload, key, n)
    ORDER BY u.subject, u.n
), inserted AS (
    INSERT INTO {docs} (subject, version, priority, status, next_iteration, payload, key)
    SELECT i.subject, i.version, i.priority, CASE WHEN i.at <= now() THEN 1 ELSE 0 END, i.at, i.payload, i.key
    FROM input AS i
    ORDER BY i.subject
    ON CONFLICT (subject) DO NOTHING
    RETURNING version, status
), counters AS (
    -- counted per version first, then spread over the metrics; spreading
    -- every row into five made a call of 1,000 documents 15% slower (pgbench,
    -- 18.0 against 15.4 ms on average)
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1::text, v.metric, sum(v.increment)
    FROM (SELECT i.version, count(*) AS n, sum(i.status) AS pending FROM inserted AS i GROUP BY i.version) AS c,
         LATERAL (VALUES ('ent', c.n), ('cnt', c.n), ('v' || c.version, c.n), ('pnd', c.pending),
                         ('pln', c.n - c.pending))
         AS v(metric, increment)
    GROUP BY v.metric
    HAVING sum(v.increment) <> 0
)
SELECT count(*)::integer AS queued_docs FROM inserted
