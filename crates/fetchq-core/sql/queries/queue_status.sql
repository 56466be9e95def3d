SELECT q.id, q.name::text, q.is_active, q.current_version, q.max_attempts,
       extract(epoch FROM q.logs_retention)::float8, q.created_at, q.max_payload_size,
       extract(epoch FROM q.retry_delay)::float8, extract(epoch FROM q.retry_delay_max)::float8,
       q.retry_jitter, q.rate_limit, extract(epoch FROM q.rate_per)::float8, q.key_concurrency,
       extract(epoch FROM q.completed_retention)::float8
FROM fetchq.queue_get($1) AS q
