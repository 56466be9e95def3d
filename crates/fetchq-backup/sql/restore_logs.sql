-- Appends the staged error log entries to {logs} (new ids, original times).
INSERT INTO {logs} (created_at, subject, message, details, ref_id)
SELECT (d->>1)::timestamptz, d->>2, d->>3, CASE WHEN jsonb_typeof(d->4) = 'null' THEN NULL ELSE d->4 END, d->>5
FROM fetchq_restore_rows
ORDER BY (d->>0)::bigint
