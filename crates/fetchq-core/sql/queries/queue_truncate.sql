SELECT success FROM fetchq.queue_truncate($1, $2)
