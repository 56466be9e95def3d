SELECT owner, host, pid, extract(epoch FROM rescue_after)::float8, registered_at, seen_at, lost FROM fetchq.worker_list()
