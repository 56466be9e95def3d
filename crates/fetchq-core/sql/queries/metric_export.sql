SELECT queue, metric, value FROM fetchq.metric_export()
