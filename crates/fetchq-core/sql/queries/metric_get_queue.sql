SELECT metric::text, current_value, last_update FROM fetchq.metric_get($1)
