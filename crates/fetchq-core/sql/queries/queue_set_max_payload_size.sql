SELECT affected_rows FROM fetchq.queue_set_max_payload_size($1, $2)
