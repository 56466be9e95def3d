SELECT was_created, was_replanned FROM fetchq.schedule_set($1, $2, $3, $4, $5, $6, $7, $8)
