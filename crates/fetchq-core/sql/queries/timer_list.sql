SELECT queue, timer, count, sum_ms, le_ms, cumulative FROM fetchq.timer_list($1, $2)
