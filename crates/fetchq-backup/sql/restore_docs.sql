-- Moves the staged documents into {docs}. An active document (status 2) had a
-- lease of a worker of the old database: it comes back pending, due now, with
-- no lease. {conflict} is DO NOTHING or DO UPDATE of every column.
INSERT INTO {docs} AS t (subject, version, priority, status, attempts, iterations,
                         next_iteration, created_at, last_iteration, lease_token, payload)
SELECT d->>0, (d->>1)::integer, (d->>2)::integer,
       CASE WHEN (d->>3)::integer = 2 THEN 1 ELSE (d->>3)::integer END,
       (d->>4)::integer, (d->>5)::bigint,
       CASE WHEN (d->>3)::integer = 2 THEN now() ELSE (d->>6)::timestamptz END,
       (d->>7)::timestamptz, (d->>8)::timestamptz,
       CASE WHEN (d->>3)::integer = 2 THEN NULL ELSE (d->>9)::uuid END,
       coalesce(d->10, '{}'::jsonb)
FROM fetchq_restore_rows
ON CONFLICT (subject) {conflict}
