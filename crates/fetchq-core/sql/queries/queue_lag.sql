SELECT fetchq.queue_lag($1)
