SELECT affected_rows FROM fetchq.metric_log_increment($1, $2, $3)
