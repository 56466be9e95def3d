-- Applies the settings of a dump to queue $1 from the JSON row $2; a column the
-- file lacks (an older schema) keeps its value. $3: also restore created_at.
UPDATE fetchq.queues AS t
SET is_active         = coalesce(s.is_active, t.is_active),
    current_version   = coalesce(s.current_version, t.current_version),
    max_attempts      = coalesce(s.max_attempts, t.max_attempts),
    logs_retention    = coalesce(s.logs_retention, t.logs_retention),
    metrics_retention = coalesce(s.metrics_retention, t.metrics_retention),
    retry_delay       = coalesce(s.retry_delay, t.retry_delay),
    retry_delay_max   = coalesce(s.retry_delay_max, t.retry_delay_max),
    retry_jitter      = coalesce(s.retry_jitter, t.retry_jitter),
    max_payload_size  = coalesce(s.max_payload_size, t.max_payload_size),
    config            = coalesce(s.config, t.config),
    created_at        = CASE WHEN $3 THEN coalesce(s.created_at, t.created_at) ELSE t.created_at END
FROM jsonb_populate_record(NULL::fetchq.queues, $2) AS s
WHERE t.name = $1
