-- Staging tables of a restore: one JSON array per row, gone at commit or rollback.
CREATE TEMP TABLE fetchq_restore_rows (d jsonb NOT NULL) ON COMMIT DROP
