SELECT next_iteration FROM fetchq.queue_next_due($1)
