SELECT affected_rows FROM fetchq.queue_set_key_concurrency($1, $2)
