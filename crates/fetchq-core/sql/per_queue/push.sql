-- doc_push for one queue. $1 queue, $2 subject, $3 version, $4 priority,
-- $5 absolute time or NULL, $6 delay (NULL: now), $7 payload (NULL: {}), $8 key
-- (NULL: none; schema 17).
-- Returns queued_docs (0 for a duplicate subject). Subject and version are
-- checked by the client; the payload limit is checked here. A new document,
-- pending or planned, wakes idle workers at commit through its 'ent' counter
-- row (trigger metrics_writes_wake): one then picks it, or learns the new
-- planned time it may have to wake up for.
WITH doc AS (
    SELECT coalesce($5::timestamptz, now() + coalesce($6::interval, interval '0')) AS at,
           CASE WHEN pg_column_size($7::jsonb) > q.max_payload_size THEN fetchq.payload_check(q, $7::jsonb)
                ELSE coalesce($7::jsonb, '{}'::jsonb) END AS payload
    FROM fetchq.queues AS q WHERE q.name = $1::text
), inserted AS (
    INSERT INTO {docs} (subject, version, priority, status, next_iteration, payload, key)
    SELECT $2::text, $3::integer, $4::integer, CASE WHEN doc.at <= now() THEN 1 ELSE 0 END, doc.at, doc.payload,
           $8::text
    FROM doc
    ON CONFLICT (subject) DO NOTHING
    RETURNING status
), counters AS (
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1::text, v.metric, v.increment
    FROM inserted AS i,
         LATERAL (VALUES ('ent', 1), ('cnt', 1), ('v' || $3::integer, 1), ('pnd', i.status), ('pln', 1 - i.status))
         AS v(metric, increment)
    WHERE v.increment <> 0
)
SELECT count(*)::integer AS queued_docs FROM inserted AS i
