-- doc_pick.sql with a lease owner (schema 21): the tokens carry $5.
SELECT 0::bigint, subject::text, payload, version, priority, attempts, iterations, created_at,
       last_iteration, next_iteration, lease_token
FROM fetchq.doc_pick($1, $2, $3, $4, $5)
