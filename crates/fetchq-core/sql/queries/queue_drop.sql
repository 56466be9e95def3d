SELECT was_dropped FROM fetchq.queue_drop($1)
