SELECT affected_rows FROM fetchq.queue_drop_logs($1, $2::interval)
