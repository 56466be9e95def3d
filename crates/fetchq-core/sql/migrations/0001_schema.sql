-- fetchq schema 1: system tables and the validation helpers every function uses.
--
-- Layout: schema `fetchq` holds functions and system tables, schema `fetchq_data`
-- holds the per-queue tables `<queue>__docs`, `<queue>__logs`, `<queue>__metrics`.
-- A queue is physically its own tables so it can be dumped, truncated, dropped or
-- moved to its own tablespace alone.
--
-- Error codes raised by fetchq (class FQ, stable, mapped by the Rust client):
--   FQ001 invalid queue name      FQ002 queue not found
--   FQ003 invalid subject         FQ004 invalid argument
--   FQ005 payload too large

CREATE SCHEMA IF NOT EXISTS fetchq;
CREATE SCHEMA IF NOT EXISTS fetchq_data;

CREATE TABLE fetchq.queues (
    id                serial PRIMARY KEY,
    name              varchar(40) NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- false while the queue is paused: pick returns nothing, push still works
    is_active         boolean NOT NULL DEFAULT true,
    current_version   integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 5,
    logs_retention    interval NOT NULL DEFAULT '24 hours',
    -- windows of the snapshot series to thin out, see queue_drop_metrics
    metrics_retention jsonb NOT NULL DEFAULT '[{"from":"1 day","to":"0 s","retain":"minute"},{"from":"7 days","to":"1 day","retain":"hour"},{"from":"90 days","to":"7 days","retain":"day"}]',
    -- a rejected document waits retry_delay * 2^(attempts-1), capped at
    -- retry_delay_max, spread by +/- retry_jitter (a fraction)
    retry_delay       interval NOT NULL DEFAULT '1 second',
    retry_delay_max   interval NOT NULL DEFAULT '1 hour',
    retry_jitter      double precision NOT NULL DEFAULT 0.2,
    max_payload_size  integer NOT NULL DEFAULT 1048576,
    config            jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT queues_name_key UNIQUE (name),
    CONSTRAINT queues_max_attempts_check CHECK (max_attempts >= 1),
    CONSTRAINT queues_retry_jitter_check CHECK (retry_jitter >= 0 AND retry_jitter <= 1)
);

-- Packed counters, one row per (queue, metric). Reads are O(1) lookups here.
CREATE TABLE fetchq.metrics (
    queue      varchar(40) NOT NULL,
    metric     varchar(100) NOT NULL,
    value      bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT metrics_pkey PRIMARY KEY (queue, metric)
);

-- Write-ahead counter deltas: operations append here (no hot row to contend on)
-- and metric_log_pack folds them into fetchq.metrics.
CREATE TABLE fetchq.metrics_writes (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    queue      varchar(40) NOT NULL,
    metric     varchar(100) NOT NULL,
    increment  bigint,
    reset      bigint
);

-- Maintenance jobs: per queue `mnt` (orphans, planned), `sts` (snapshots),
-- `drp` (retention), and the global `lgp` (metric packing, queue '*').
CREATE TABLE fetchq.jobs (
    id             serial PRIMARY KEY,
    task           varchar(40) NOT NULL,
    queue          varchar(40) NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    iterations     bigint NOT NULL DEFAULT 0,
    next_iteration timestamptz NOT NULL DEFAULT now(),
    last_iteration timestamptz,
    settings       jsonb NOT NULL DEFAULT '{}',
    payload        jsonb NOT NULL DEFAULT '{}',
    last_error     text,
    CONSTRAINT jobs_task_queue_key UNIQUE (task, queue)
);
CREATE INDEX jobs_next_iteration_idx ON fetchq.jobs (next_iteration);

INSERT INTO fetchq.jobs (task, queue, settings)
VALUES ('lgp', '*', '{"delay":"1 second","duration":"1 minute"}');

-- Raises FQ001 unless `queue` is a valid queue name; returns it unchanged.
CREATE FUNCTION fetchq.queue_name_check(queue text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF queue IS NULL OR queue !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid queue name %', quote_nullable(left(queue, 80))
            USING ERRCODE = 'FQ001',
                  HINT = 'a queue name is 1 to 40 characters of a-z, 0-9 and _, starting with a letter';
    END IF;
    RETURN queue;
END $$;

-- The queue's settings row; FQ001 for a bad name, FQ002 for an unknown queue.
CREATE FUNCTION fetchq.queue_get(queue text) RETURNS fetchq.queues
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues;
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    SELECT * INTO q FROM fetchq.queues AS t WHERE t.name = queue;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue
            USING ERRCODE = 'FQ002', HINT = 'create it first with fetchq.queue_create';
    END IF;
    RETURN q;
END $$;

-- Qualified, quoted name of one of a queue's tables ('docs', 'logs', 'metrics').
CREATE FUNCTION fetchq.queue_table(queue text, kind text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('%I.%I', 'fetchq_data', fetchq.queue_name_check(queue) || '__' || kind)
$$;

-- Raises FQ003 unless `subject` is 1 to 255 characters.
CREATE FUNCTION fetchq.subject_check(subject text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF subject IS NULL OR subject = '' OR length(subject) > 255 THEN
        RAISE EXCEPTION 'invalid subject %', quote_nullable(left(subject, 80))
            USING ERRCODE = 'FQ003', HINT = 'a subject is 1 to 255 characters';
    END IF;
    RETURN subject;
END $$;

-- Raises FQ004 with `message` unless `ok` is true.
CREATE FUNCTION fetchq.arg_check(ok boolean, message text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION '%', message USING ERRCODE = 'FQ004';
    END IF;
END $$;

-- Raises FQ005 when a payload is larger than the queue allows.
CREATE FUNCTION fetchq.payload_check(q fetchq.queues, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    size integer := pg_column_size(payload);
BEGIN
    IF size > q.max_payload_size THEN
        RAISE EXCEPTION 'payload of % bytes exceeds the % bytes allowed in queue "%"',
            size, q.max_payload_size, q.name
            USING ERRCODE = 'FQ005', HINT = 'raise it with fetchq.queue_set_max_payload_size';
    END IF;
    RETURN payload;
END $$;

-- Appends counter deltas (zero deltas are skipped) for metric_log_pack to fold.
CREATE FUNCTION fetchq.metric_write(queue text, metrics text[], increments bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1, u.m, u.i FROM unnest($2, $3) AS u(m, i) WHERE u.i <> 0
$$;

-- Engine version and schema version (the highest applied migration).
CREATE FUNCTION fetchq.info(OUT version varchar, OUT schema_version integer)
LANGUAGE sql STABLE AS $$
    SELECT format('5.%s.0', max(m.version))::varchar, max(m.version)::integer
    FROM fetchq.migrations AS m
$$;

-- Kept for FetchQ v4 compatibility: the schema is installed by the migrations,
-- this only makes sure the global jobs exist. Always true.
CREATE FUNCTION fetchq.init(OUT was_initialized boolean)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fetchq.jobs (task, queue, settings)
    VALUES ('lgp', '*', '{"delay":"1 second","duration":"1 minute"}')
    ON CONFLICT ON CONSTRAINT jobs_task_queue_key DO NOTHING;
    was_initialized := true;
END $$;
