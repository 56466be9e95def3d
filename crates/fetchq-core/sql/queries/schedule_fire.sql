SELECT outcome FROM fetchq.schedule_fire($1, $2, $3, $4, $5)
