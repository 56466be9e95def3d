SELECT queued_logs FROM fetchq.log_error($1, $2, $3, $4, $5)
