-- One queue's settings row (every column but the id) and its counters: the
-- packed values plus the deltas not yet packed; has_key: its documents table
-- has the key column (schema 17 and later). $1 = queue name.
SELECT to_jsonb(q) - 'id' AS settings,
       q.current_version,
       fetchq.queue_table(q.name, 'docs') AS docs_table,
       fetchq.queue_table(q.name, 'logs') AS logs_table,
       fetchq.queue_table(q.name, 'metrics') AS metrics_table,
       EXISTS (SELECT 1 FROM pg_attribute AS a
               WHERE a.attrelid = to_regclass(fetchq.queue_table(q.name, 'docs'))
                 AND a.attname = 'key' AND NOT a.attisdropped) AS has_key,
       (SELECT coalesce(jsonb_object_agg(c.metric, c.value), '{}'::jsonb)
        FROM (SELECT u.metric, sum(u.value)::bigint AS value
              FROM (SELECT m.metric, m.value FROM fetchq.metrics AS m WHERE m.queue = q.name
                    UNION ALL
                    SELECT w.metric, w.increment FROM fetchq.metrics_writes AS w
                    WHERE w.queue = q.name AND w.increment IS NOT NULL) AS u
              GROUP BY u.metric) AS c) AS counters
FROM fetchq.queues AS q
WHERE q.name = $1
