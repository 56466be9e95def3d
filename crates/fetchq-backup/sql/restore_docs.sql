-- Moves the staged documents into {docs}. An active document (status 2) had a
-- lease of a worker of the old database: it comes back pending, due now, with
-- no lease. {conflict} is DO NOTHING or DO UPDATE of every column.
INSERT INTO {docs} AS t (subject, version, priority, status, attempts, iterations,
                         next_iteration, created_at, last_iteration, lease_token, payload, key)
SELECT s.subject, s.version, s.priority,
       CASE WHEN s.status = 2 THEN 1 ELSE s.status END,
       s.attempts, s.iterations,
       CASE WHEN s.status = 2 THEN now() ELSE s.next_iteration END,
       s.created_at, s.last_iteration,
       CASE WHEN s.status = 2 THEN NULL ELSE s.lease_token END,
       s.payload, s.key
FROM fetchq_restore_docs AS s
ON CONFLICT (subject) {conflict}
