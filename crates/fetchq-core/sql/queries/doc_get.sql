SELECT subject::text, version, priority, status, attempts, iterations,
       next_iteration, created_at, last_iteration, payload, key::text
FROM fetchq.doc_get($1, $2)
