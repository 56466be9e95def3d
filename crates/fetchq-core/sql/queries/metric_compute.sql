SELECT cnt, pln, pnd, act, kll, cpl FROM fetchq.metric_compute($1)
