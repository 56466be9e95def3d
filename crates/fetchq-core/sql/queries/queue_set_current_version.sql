SELECT affected_rows FROM fetchq.queue_set_current_version($1, $2)
