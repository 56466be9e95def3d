SELECT success, processed FROM fetchq.mnt_job_run($1, $2)
