SELECT fetchq.worker_register($1, $2, $3)
