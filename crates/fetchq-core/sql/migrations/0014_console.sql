-- Schema 14: what the web console needs from the engine.

-- How many documents of `queue` match a filter (NULL = any; the same filters as
-- doc_list), counting at most `cap` (1 to 10,000,000): what a bulk action will
-- touch, said before it runs. `capped` is true when more than `cap` match
-- (`matched` is then `cap`). The count stops at the cap, so its cost is
-- bounded by it, never by the size of the queue.
CREATE FUNCTION fetchq.doc_count(queue text, list_status integer DEFAULT NULL, list_version integer DEFAULT NULL,
                                 subject_prefix text DEFAULT NULL, cap integer DEFAULT 100000,
                                 OUT matched bigint, OUT capped boolean)
LANGUAGE plpgsql STABLE
SET jit = off
AS $$
#variable_conflict use_variable
DECLARE
    b record;
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(cap BETWEEN 1 AND 10000000, format('cap must be 1 to 10000000, got %s', cap));
    SELECT f.lo, f.hi, f.impossible INTO b
    FROM fetchq.doc_filter_check(list_status, list_version, subject_prefix) AS f;
    capped := false;
    matched := 0;
    IF b.impossible THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s AS d WHERE %s LIMIT $7) AS c',
                   fetchq.queue_table(queue, 'docs'),
                   fetchq.doc_filter_sql(list_status, list_version, subject_prefix, NULL, b.lo IS NOT NULL))
    USING list_status, list_version, subject_prefix, NULL::text, b.lo, b.hi, cap::bigint + 1
    INTO matched;
    IF matched > cap THEN
        matched := cap;
        capped := true;
    END IF;
END $$;

-- Snapshots take the exact counters (packed values plus the writes not packed
-- yet), like every other read since schema 13: a snapshot taken right after
-- work shows that work, whether maintenance packed it or not.
CREATE OR REPLACE FUNCTION fetchq.metric_snap(queue text, whitelist jsonb DEFAULT NULL,
                                              OUT success boolean, OUT inserts integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(whitelist IS NULL OR jsonb_typeof(whitelist) = 'array', 'whitelist must be a JSON array of metric names');
    EXECUTE format($q$
        INSERT INTO %s (metric, value)
        SELECT r.metric, r.current_value FROM fetchq.metric_read($1) AS r
        WHERE $2::jsonb IS NULL OR $2 ? r.metric$q$, fetchq.queue_table(queue, 'metrics'))
    USING queue, whitelist;
    GET DIAGNOSTICS inserts = ROW_COUNT;
    success := true;
END $$;


-- Dead documents get an index by subject, so listing them (the console's
-- "dead" filter, a bulk play of the dead) reads only them however big the
-- queue. Documents enter and leave "dead" rarely: the pick and the outcomes
-- pay only the index's predicate check, never an index write.
-- Creating it on existing queues reads each documents table once.
DO $$
DECLARE
    q record;
BEGIN
    FOR q IN SELECT t.name FROM fetchq.queues AS t ORDER BY t.name LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (subject) WHERE status = -1',
            q.name || '__docs_dead_idx', 'fetchq_data', q.name || '__docs');
    END LOOP;
END $$;

-- queue_create as before, plus the dead index.
CREATE OR REPLACE FUNCTION fetchq.queue_create(queue text, OUT was_created boolean, OUT queue_id integer)
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
    -- Dead documents by subject: the documents page filtered by "dead".
    EXECUTE format('CREATE INDEX %I ON %I.%I (subject) WHERE status = -1',
        docs || '_dead_idx', 'fetchq_data', docs);

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

CREATE OR REPLACE FUNCTION fetchq.queue_drop_indexes(queue text, OUT was_dropped boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    docs text := (fetchq.queue_get(queue)).name || '__docs';
BEGIN
    EXECUTE format('DROP INDEX IF EXISTS %I.%I, %I.%I, %I.%I, %I.%I',
        'fetchq_data', docs || '_pick_idx', 'fetchq_data', docs || '_planned_idx',
        'fetchq_data', docs || '_active_idx', 'fetchq_data', docs || '_dead_idx');
    was_dropped := true;
END $$;

CREATE OR REPLACE FUNCTION fetchq.queue_create_indexes(queue text, OUT was_created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    docs text := (fetchq.queue_get(queue)).name || '__docs';
BEGIN
    EXECUTE format('LOCK TABLE %I.%I IN SHARE ROW EXCLUSIVE MODE', 'fetchq_data', docs);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (version, priority DESC, next_iteration, attempts) WHERE status = 1',
        docs || '_pick_idx', 'fetchq_data', docs);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (next_iteration) WHERE status = 0',
        docs || '_planned_idx', 'fetchq_data', docs);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (next_iteration) WHERE status = 2',
        docs || '_active_idx', 'fetchq_data', docs);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (subject) WHERE status = -1',
        docs || '_dead_idx', 'fetchq_data', docs);
    was_created := true;
END $$;

-- A page of documents whose status is rare: read through that status's
-- partial index (planned, pending, active, dead) and sorted, rather than
-- walking the primary key past millions of documents of other statuses.
-- Sorting by an expression keeps the planner off the primary key walk.
CREATE FUNCTION fetchq.doc_list_rare(queue text, list_status integer, list_version integer,
                                     subject_prefix text, after_subject text, lim integer, lo text, hi text)
RETURNS TABLE (subject varchar, version integer, priority integer, status integer, attempts integer,
               iterations bigint, next_iteration timestamptz, created_at timestamptz,
               last_iteration timestamptz, payload jsonb)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_sort = on
AS $$
#variable_conflict use_variable
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.version, d.priority, d.status, d.attempts, d.iterations,
               d.next_iteration, d.created_at, d.last_iteration, d.payload
        FROM %s AS d WHERE %s
        ORDER BY d.subject || '' LIMIT $7$q$,
        fetchq.queue_table(queue, 'docs'),
        fetchq.doc_filter_sql(list_status, list_version, subject_prefix, after_subject, lo IS NOT NULL))
    USING list_status, list_version, subject_prefix, after_subject, lo, hi, lim;
END $$;

-- Documents with a rare status (at most this many, by the exact counter) are
-- listed through their status's index; others by walking the primary key.
CREATE FUNCTION fetchq.doc_list_rare_limit() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 50000::bigint $$;

-- doc_list as in schema 12, choosing the rare-status path when it pays.
CREATE OR REPLACE FUNCTION fetchq.doc_list(queue text, list_status integer DEFAULT NULL, list_version integer DEFAULT NULL,
                                           subject_prefix text DEFAULT NULL, after_subject text DEFAULT NULL,
                                           lim integer DEFAULT 100)
RETURNS TABLE (subject varchar, version integer, priority integer, status integer, attempts integer,
               iterations bigint, next_iteration timestamptz, created_at timestamptz,
               last_iteration timestamptz, payload jsonb)
LANGUAGE plpgsql STABLE
SET enable_sort = off
AS $$
#variable_conflict use_variable
DECLARE
    b record;
    matching bigint;
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(lim BETWEEN 1 AND 1000, format('limit must be 1 to 1000, got %s', lim));
    SELECT f.lo, f.hi, f.impossible INTO b
    FROM fetchq.doc_filter_check(list_status, list_version, subject_prefix) AS f;
    IF b.impossible THEN
        RETURN;
    END IF;
    IF list_status IN (-1, 0, 1, 2) THEN
        SELECT coalesce(sum(r.current_value), 0) INTO matching
        FROM fetchq.metric_read(queue, ARRAY[CASE list_status WHEN -1 THEN 'kll' WHEN 0 THEN 'pln'
                                                              WHEN 1 THEN 'pnd' ELSE 'act' END]) AS r;
        IF matching <= fetchq.doc_list_rare_limit() THEN
            RETURN QUERY SELECT * FROM fetchq.doc_list_rare(queue, list_status, list_version, subject_prefix,
                                                            after_subject, lim, b.lo, b.hi);
            RETURN;
        END IF;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.version, d.priority, d.status, d.attempts, d.iterations,
               d.next_iteration, d.created_at, d.last_iteration, d.payload
        FROM %s AS d WHERE %s
        ORDER BY d.subject LIMIT $7$q$,
        fetchq.queue_table(queue, 'docs'),
        fetchq.doc_filter_sql(list_status, list_version, subject_prefix, after_subject, b.lo IS NOT NULL))
    USING list_status, list_version, subject_prefix, after_subject, b.lo, b.hi, lim;
END $$;
