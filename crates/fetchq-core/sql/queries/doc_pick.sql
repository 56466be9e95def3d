SELECT subject::text, payload, version, priority, attempts, iterations, created_at, last_iteration,
       next_iteration, lease_token
FROM fetchq.doc_pick($1, $2, $3, $4)
