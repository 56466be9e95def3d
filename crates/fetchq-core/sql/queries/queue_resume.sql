SELECT affected_rows FROM fetchq.queue_resume($1)
