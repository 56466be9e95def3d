SELECT current_value, last_update, does_exists FROM fetchq.metric_get($1, $2)
