SELECT inserts FROM fetchq.metric_snap($1)
