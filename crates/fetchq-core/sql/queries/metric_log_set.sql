SELECT affected_rows FROM fetchq.metric_log_set($1, $2, $3)
