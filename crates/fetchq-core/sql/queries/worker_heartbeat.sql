SELECT fetchq.worker_heartbeat($1)
