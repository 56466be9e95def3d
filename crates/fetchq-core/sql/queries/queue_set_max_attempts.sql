SELECT affected_rows FROM fetchq.queue_set_max_attempts($1, $2)
