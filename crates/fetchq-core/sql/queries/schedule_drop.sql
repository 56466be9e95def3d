SELECT affected_rows FROM fetchq.schedule_drop($1)
