SELECT metric::text, created_at, value
FROM fetchq.metric_history($1, $2, $3)
