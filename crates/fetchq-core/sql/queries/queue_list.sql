SELECT id, name::text, is_active, current_version, max_attempts,
       extract(epoch FROM logs_retention)::float8, created_at
FROM fetchq.queue_status()
