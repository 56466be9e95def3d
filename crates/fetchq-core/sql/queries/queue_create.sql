SELECT was_created, queue_id FROM fetchq.queue_create($1)
