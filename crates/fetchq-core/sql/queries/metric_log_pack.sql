SELECT affected_rows FROM fetchq.metric_log_pack()
