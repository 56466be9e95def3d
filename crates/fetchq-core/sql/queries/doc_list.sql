SELECT subject::text, version, priority, status, attempts, iterations,
       next_iteration, created_at, last_iteration, payload, key::text
FROM fetchq.doc_list($1, $2, $3, $4, $5, $6)
