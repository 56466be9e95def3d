-- Appends the staged metric snapshots to {metrics} (new ids, original times).
INSERT INTO {metrics} (created_at, metric, value)
SELECT (d->>1)::timestamptz, d->>2, (d->>3)::bigint
FROM fetchq_restore_rows
ORDER BY (d->>0)::bigint
