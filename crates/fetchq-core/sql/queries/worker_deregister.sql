SELECT fetchq.worker_deregister($1)
