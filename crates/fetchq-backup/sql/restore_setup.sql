-- Staging tables of a restore, gone at commit or rollback: documents for a
-- queue that already exists (typed, checked by COPY), and one JSON array per
-- row for logs and metric snapshots.
CREATE TEMP TABLE fetchq_restore_docs (
    subject        varchar(255) NOT NULL,
    version        integer NOT NULL,
    priority       integer NOT NULL,
    status         integer NOT NULL,
    attempts       integer NOT NULL,
    iterations     bigint NOT NULL,
    next_iteration timestamptz NOT NULL,
    created_at     timestamptz NOT NULL,
    last_iteration timestamptz,
    lease_token    uuid,
    payload        jsonb NOT NULL,
    key            varchar(255)
) ON COMMIT DROP;
CREATE TEMP TABLE fetchq_restore_rows (d jsonb NOT NULL) ON COMMIT DROP;
