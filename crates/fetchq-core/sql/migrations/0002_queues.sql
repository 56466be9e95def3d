-- fetchq schema 2: queue lifecycle and settings.

-- Creates the queue's tables, indexes and maintenance jobs. Creating an existing
-- queue is not an error: was_created is false and nothing changes.
CREATE FUNCTION fetchq.queue_create(queue text, OUT was_created boolean, OUT queue_id integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    docs text := queue || '__docs';
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    INSERT INTO fetchq.queues (name) VALUES (queue)
    ON CONFLICT ON CONSTRAINT queues_name_key DO NOTHING
    RETURNING id INTO queue_id;
    IF queue_id IS NULL THEN
        SELECT t.id INTO queue_id FROM fetchq.queues AS t WHERE t.name = queue;
        was_created := false;
        RETURN;
    END IF;

    -- next_iteration is the planned time for statuses 0 and 1, and the lease
    -- expiry while a document is active (2). lease_token fences resolutions.
    EXECUTE format($ddl$
        CREATE TABLE %I.%I (
            subject        varchar(255) NOT NULL,
            version        integer NOT NULL DEFAULT 0,
            priority       integer NOT NULL DEFAULT 0,
            status         integer NOT NULL DEFAULT 0,
            attempts       integer NOT NULL DEFAULT 0,
            iterations     bigint NOT NULL DEFAULT 0,
            next_iteration timestamptz NOT NULL DEFAULT now(),
            created_at     timestamptz NOT NULL DEFAULT now(),
            last_iteration timestamptz,
            lease_token    uuid,
            payload        jsonb NOT NULL DEFAULT '{}',
            CONSTRAINT %I PRIMARY KEY (subject)
        ) WITH (fillfactor = 80)$ddl$, 'fetchq_data', docs, docs || '_pkey');
    -- Pending documents in pick order, per version: the pick walks this index.
    EXECUTE format('CREATE INDEX %I ON %I.%I (version, priority DESC, next_iteration, attempts) WHERE status = 1',
        docs || '_pick_idx', 'fetchq_data', docs);
    -- Planned documents by due time: promotion to pending at their time.
    EXECUTE format('CREATE INDEX %I ON %I.%I (next_iteration) WHERE status = 0',
        docs || '_planned_idx', 'fetchq_data', docs);
    -- Active documents by lease expiry: orphan rescue.
    EXECUTE format('CREATE INDEX %I ON %I.%I (next_iteration) WHERE status = 2',
        docs || '_active_idx', 'fetchq_data', docs);

    EXECUTE format($ddl$
        CREATE TABLE %I.%I (
            id         bigserial PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            subject    varchar(255) NOT NULL,
            message    text NOT NULL,
            details    jsonb,
            ref_id     text
        )$ddl$, 'fetchq_data', queue || '__logs');
    EXECUTE format('CREATE INDEX %I ON %I.%I (created_at)', queue || '__logs_created_idx', 'fetchq_data', queue || '__logs');
    EXECUTE format('CREATE INDEX %I ON %I.%I (subject)', queue || '__logs_subject_idx', 'fetchq_data', queue || '__logs');

    EXECUTE format($ddl$
        CREATE TABLE %I.%I (
            id         bigserial PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            metric     varchar(100) NOT NULL,
            value      bigint NOT NULL
        )$ddl$, 'fetchq_data', queue || '__metrics');
    EXECUTE format('CREATE INDEX %I ON %I.%I (metric, created_at)', queue || '__metrics_metric_idx', 'fetchq_data', queue || '__metrics');

    INSERT INTO fetchq.jobs (task, queue, settings) VALUES
        ('mnt', queue, '{"delay":"1 second","duration":"1 minute","limit":500}'),
        ('sts', queue, '{"delay":"5 minutes","duration":"5 minutes"}'),
        ('drp', queue, '{"delay":"10 minutes","duration":"5 minutes"}')
    ON CONFLICT ON CONSTRAINT jobs_task_queue_key DO NOTHING;

    PERFORM pg_notify('fetchq_queue_create', queue);
    was_created := true;
END $$;

-- Drops the queue's tables, jobs and metrics. A missing queue returns was_dropped false.
CREATE FUNCTION fetchq.queue_drop(queue text, OUT was_dropped boolean, OUT queue_id integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    DELETE FROM fetchq.queues AS t WHERE t.name = queue RETURNING t.id INTO queue_id;
    was_dropped := queue_id IS NOT NULL;
    IF NOT was_dropped THEN
        RETURN;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %I.%I, %I.%I, %I.%I',
        'fetchq_data', queue || '__docs', 'fetchq_data', queue || '__logs', 'fetchq_data', queue || '__metrics');
    DELETE FROM fetchq.jobs AS j WHERE j.queue = queue;
    DELETE FROM fetchq.metrics AS m WHERE m.queue = queue;
    DELETE FROM fetchq.metrics_writes AS w WHERE w.queue = queue;
    PERFORM pg_notify('fetchq_queue_drop', queue);
END $$;

-- The queue's id, FQ002 when it does not exist.
CREATE FUNCTION fetchq.queue_get_id(queue text, OUT queue_id integer)
LANGUAGE sql STABLE AS $$
    SELECT (fetchq.queue_get($1)).id
$$;

-- One row per queue with its main settings.
CREATE FUNCTION fetchq.queue_status()
RETURNS TABLE (id integer, name varchar, is_active boolean, current_version integer,
               max_attempts integer, logs_retention interval, created_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT q.id, q.name, q.is_active, q.current_version, q.max_attempts, q.logs_retention, q.created_at
    FROM fetchq.queues AS q ORDER BY q.name
$$;

-- The same for one queue (FQ002 when it does not exist).
CREATE FUNCTION fetchq.queue_status(queue text)
RETURNS TABLE (id integer, name varchar, is_active boolean, current_version integer,
               max_attempts integer, logs_retention interval, created_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT q.id, q.name, q.is_active, q.current_version, q.max_attempts, q.logs_retention, q.created_at
    FROM fetchq.queue_get($1) AS q
$$;

-- After this many consecutive failed attempts (rejects or orphans) a document is dead.
CREATE FUNCTION fetchq.queue_set_max_attempts(queue text, max_attempts integer,
                                              OUT affected_rows integer, OUT was_reindexed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(max_attempts >= 1, format('max_attempts must be at least 1, got %s', coalesce(max_attempts::text, 'NULL')));
    UPDATE fetchq.queues AS t SET max_attempts = max_attempts WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    -- the indexes do not depend on the threshold, nothing to rebuild
    was_reindexed := false;
END $$;

-- The version workers of this queue target by default (informational for pick).
CREATE FUNCTION fetchq.queue_set_current_version(queue text, version integer,
                                                 OUT affected_rows integer, OUT was_reindexed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(version >= 0, format('version must be 0 or more, got %s', coalesce(version::text, 'NULL')));
    UPDATE fetchq.queues AS t SET current_version = version WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    -- the pick index covers every version, nothing to rebuild
    was_reindexed := false;
END $$;

-- How long error logs are kept (default 24 hours).
CREATE FUNCTION fetchq.queue_set_logs_retention(queue text, retention interval, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(retention >= interval '0', 'retention must not be negative');
    UPDATE fetchq.queues AS t SET logs_retention = retention WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- How the snapshot series is thinned: [{"from":"1 day","to":"0 s","retain":"minute"}, ...].
CREATE FUNCTION fetchq.queue_set_metrics_retention(queue text, retention jsonb, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    rule jsonb;
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(jsonb_typeof(retention) = 'array', 'metrics retention must be a JSON array of {from, to, retain}');
    FOR rule IN SELECT value FROM jsonb_array_elements(retention) LOOP
        PERFORM fetchq.arg_check(
            (rule->>'from')::interval IS NOT NULL AND (rule->>'to')::interval IS NOT NULL
            AND rule->>'retain' IN ('microseconds', 'milliseconds', 'second', 'minute', 'hour', 'day', 'week', 'month', 'year'),
            format('invalid metrics retention rule %s', rule));
    END LOOP;
    UPDATE fetchq.queues AS t SET metrics_retention = retention WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Backoff of rejected documents: delay * 2^(attempts-1), capped, with +/- jitter.
CREATE FUNCTION fetchq.queue_set_retry_backoff(queue text, delay interval, max_delay interval,
                                               jitter double precision DEFAULT 0.2, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(delay >= interval '0' AND max_delay >= delay,
        'retry delay must not be negative and max_delay must be at least delay');
    PERFORM fetchq.arg_check(jitter >= 0 AND jitter <= 1, 'jitter must be between 0 and 1');
    UPDATE fetchq.queues AS t
    SET retry_delay = delay, retry_delay_max = max_delay, retry_jitter = jitter
    WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Largest payload (in bytes, as stored) the queue accepts; default 1 MiB.
CREATE FUNCTION fetchq.queue_set_max_payload_size(queue text, max_bytes integer, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(max_bytes >= 16, 'max payload size must be at least 16 bytes');
    UPDATE fetchq.queues AS t SET max_payload_size = max_bytes WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Pauses a queue: pick returns nothing until queue_resume. Returns 1 if it changed.
CREATE FUNCTION fetchq.queue_pause(queue text, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    UPDATE fetchq.queues AS t SET is_active = false WHERE t.name = queue AND t.is_active;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM pg_notify('fetchq_queue_pause', queue);
    END IF;
END $$;

-- Resumes a paused queue. Returns 1 if it changed.
CREATE FUNCTION fetchq.queue_resume(queue text, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    UPDATE fetchq.queues AS t SET is_active = true WHERE t.name = queue AND NOT t.is_active;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM pg_notify('fetchq_queue_resume', queue);
    END IF;
END $$;

-- Deletes error logs older than the given age (default: the queue's logs_retention).
CREATE FUNCTION fetchq.queue_drop_logs(queue text, older_than interval DEFAULT NULL, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
BEGIN
    EXECUTE format('DELETE FROM %s WHERE created_at < $1', fetchq.queue_table(queue, 'logs'))
    USING now() - coalesce(older_than, q.logs_retention);
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Deletes error logs created before a point in time.
CREATE FUNCTION fetchq.queue_drop_logs(queue text, before timestamptz, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    EXECUTE format('DELETE FROM %s WHERE created_at < $1', fetchq.queue_table(queue, 'logs'))
    USING before;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Thins the snapshot series: in each window [now-from, now-to) only the newest
-- row per metric and `retain` bucket is kept; rows older than every window go.
CREATE FUNCTION fetchq.queue_drop_metrics(queue text, retention jsonb DEFAULT NULL, OUT removed_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    policy jsonb := coalesce(retention, q.metrics_retention);
    tbl text := fetchq.queue_table(queue, 'metrics');
    rule jsonb;
    n integer;
    oldest interval;
BEGIN
    removed_rows := 0;
    IF jsonb_typeof(policy) <> 'array' OR jsonb_array_length(policy) = 0 THEN
        RETURN;
    END IF;
    FOR rule IN SELECT value FROM jsonb_array_elements(policy) LOOP
        EXECUTE format($q$
            DELETE FROM %s AS m
            WHERE m.created_at >= now() - $1 AND m.created_at < now() - $2
              AND m.id NOT IN (
                SELECT DISTINCT ON (s.metric, date_trunc($3, s.created_at)) s.id
                FROM %s AS s
                WHERE s.created_at >= now() - $1 AND s.created_at < now() - $2
                ORDER BY s.metric, date_trunc($3, s.created_at), s.created_at DESC, s.id DESC)$q$, tbl, tbl)
        USING (rule->>'from')::interval, (rule->>'to')::interval, rule->>'retain';
        GET DIAGNOSTICS n = ROW_COUNT;
        removed_rows := removed_rows + n;
        oldest := greatest(oldest, (rule->>'from')::interval);
    END LOOP;
    EXECUTE format('DELETE FROM %s WHERE created_at < now() - $1', tbl) USING oldest;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed_rows := removed_rows + n;
END $$;
