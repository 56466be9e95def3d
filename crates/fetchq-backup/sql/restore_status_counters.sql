-- The status and version counters of queue $1, one the restore created and
-- loaded: $2 = {"cnt": .., "pln": .., ..., "v0": ..} as the reader counted the
-- documents it sent (fetchq.metric_reset would count the same from the table).
INSERT INTO fetchq.metrics AS t (queue, metric, value, updated_at)
SELECT $1, c.key, (c.value #>> '{}')::bigint, now()
FROM jsonb_each($2) AS c
ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE SET value = excluded.value, updated_at = now()
