SELECT affected_rows FROM fetchq.queue_set_retry_backoff($1, $2, $3, $4)
