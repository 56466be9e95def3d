SELECT affected_rows FROM fetchq.schedule_plan($1, $2, $3)
