SELECT activated_count, rescheduled_count, killed_count FROM fetchq.mnt_run($1, $2)
