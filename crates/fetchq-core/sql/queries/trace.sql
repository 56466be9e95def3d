SELECT step, created_at, queue::text, type, info, details FROM fetchq.trace($1, 'ASC')
