SELECT id, created_at, subject::text, message, details, ref_id
FROM fetchq.log_list($1, $2, $3, $4)
