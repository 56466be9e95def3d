SELECT cnt, pln, pnd, act, kll, cpl FROM fetchq.metric_reset($1)
