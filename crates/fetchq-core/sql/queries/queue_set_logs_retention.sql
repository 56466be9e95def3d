SELECT affected_rows FROM fetchq.queue_set_logs_retention($1, $2)
