SELECT affected_rows FROM fetchq.queue_set_rate_limit($1, $2, $3)
