SELECT affected_rows FROM fetchq.queue_set_completed_retention($1, $2)
