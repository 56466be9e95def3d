SELECT affected_rows FROM fetchq.queue_pause($1)
