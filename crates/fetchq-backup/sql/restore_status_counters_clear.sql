-- Before restore_status_counters.sql: the status and version counters of queue
-- $1 (one the restore created) go, as fetchq.metric_reset does.
WITH writes AS (
    DELETE FROM fetchq.metrics_writes AS w
    WHERE w.queue = $1 AND (w.metric IN ('cnt', 'pln', 'pnd', 'act', 'kll', 'cpl') OR w.metric ~ '^v[0-9]+$')
)
DELETE FROM fetchq.metrics AS m WHERE m.queue = $1 AND m.metric ~ '^v[0-9]+$'
