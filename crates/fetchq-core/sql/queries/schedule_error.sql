SELECT affected_rows FROM fetchq.schedule_error($1, $2, $3)
