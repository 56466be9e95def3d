SELECT affected_rows FROM fetchq.mnt_drop_completed($1, $2)
