SELECT name::text, cron, time_zone, revision, next_tick_at, last_error, db_now FROM fetchq.schedule_due($1)
