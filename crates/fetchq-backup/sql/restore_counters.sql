-- Restores a new queue's history counters (entered, processed, rejected, ...);
-- the status counters are recomputed from the documents afterwards.
INSERT INTO fetchq.metrics (queue, metric, value)
SELECT $1, c.key, (c.value #>> '{}')::bigint
FROM jsonb_each($2) AS c
WHERE c.key NOT IN ('cnt', 'pln', 'pnd', 'act', 'kll', 'cpl') AND c.key !~ '^v[0-9]+$'
  AND jsonb_typeof(c.value) = 'number'
ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE SET value = excluded.value, updated_at = now()
