SELECT queue, metric, value, is_counter FROM fetchq.metric_export()
