-- fetchq.doc_pick in the column layout of sql/per_queue/pick.sql (column 0,
-- the promotion count there, is 0), so one row reader serves both.
SELECT 0::bigint, subject::text, payload, version, priority, attempts, iterations, created_at,
       last_iteration, next_iteration, lease_token
FROM fetchq.doc_pick($1, $2, $3, $4)
