-- fetchq schema 11: FetchQ v4 compatibility.
--
-- The FetchQ v4 SQL functions this engine lacked, and the v4 signatures it had
-- changed, so that v4 callers (the node client, scripts, the v4 test suite)
-- work unchanged. The deliberate differences are listed in README.md.

-- queue_drop_logs('q', '24 hours'): an untyped literal matched both the
-- interval and the timestamptz overload ("not unique"). PostgreSQL prefers a
-- text parameter for an untyped literal, so this overload takes such calls:
-- an interval string (v4's retention string) is an age, anything else must be
-- a point in time.
CREATE FUNCTION fetchq.queue_drop_logs(queue text, older_than text, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    age interval;
    before timestamptz;
BEGIN
    IF older_than IS NULL THEN
        SELECT t.affected_rows INTO affected_rows FROM fetchq.queue_drop_logs(queue, NULL::interval) AS t;
        RETURN;
    END IF;
    BEGIN
        age := older_than::interval;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
        BEGIN
            before := older_than::timestamptz;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
            RAISE EXCEPTION 'invalid log retention %: neither an interval nor a timestamp', quote_literal(left(older_than, 80))
                USING ERRCODE = 'FQ004';
        END;
    END;
    IF age IS NOT NULL THEN
        SELECT t.affected_rows INTO affected_rows FROM fetchq.queue_drop_logs(queue, age) AS t;
    ELSE
        SELECT t.affected_rows INTO affected_rows FROM fetchq.queue_drop_logs(queue, before) AS t;
    END IF;
END $$;

-- v4: success instead of affected_rows (false when the job does not exist).
DROP FUNCTION fetchq.mnt_job_reschedule(integer, interval);
CREATE FUNCTION fetchq.mnt_job_reschedule(job_id integer, delay interval, OUT success boolean)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE fetchq.jobs AS j
    SET next_iteration = now() + delay, iterations = j.iterations + 1, attempts = 0,
        last_iteration = now(), last_error = NULL
    WHERE j.id = job_id;
    success := FOUND;
END $$;

-- v4: mnt_job_run() runs one due job; mnt_job_run(n) runs n with a 5 minute lock.
-- Same body as schema 6, only the default of max_jobs changes (10 -> 1).
CREATE OR REPLACE FUNCTION fetchq.mnt_job_run(lock_duration interval DEFAULT '5 minutes', max_jobs integer DEFAULT 1,
                                              OUT success boolean, OUT processed integer)
LANGUAGE plpgsql AS $$
DECLARE
    job fetchq.jobs;
    delay interval;
    message text;
BEGIN
    success := true;
    processed := 0;
    FOR job IN SELECT * FROM fetchq.mnt_job_pick(lock_duration, max_jobs) LOOP
        delay := coalesce((job.settings->>'delay')::interval, interval '5 minutes');
        BEGIN
            CASE job.task
                WHEN 'lgp' THEN PERFORM fetchq.metric_log_pack();
                WHEN 'mnt' THEN PERFORM fetchq.mnt_run(job.queue, coalesce((job.settings->>'limit')::integer, 500));
                WHEN 'sts' THEN PERFORM fetchq.metric_snap(job.queue);
                WHEN 'drp' THEN
                    PERFORM fetchq.queue_drop_logs(job.queue);
                    PERFORM fetchq.queue_drop_metrics(job.queue);
                ELSE
                    RAISE EXCEPTION 'unknown maintenance task "%"', job.task USING ERRCODE = 'FQ004';
            END CASE;
            PERFORM fetchq.mnt_job_reschedule(job.id, delay);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
            RAISE WARNING 'fetchq maintenance job % (%) failed: %', job.task, job.queue, message;
            UPDATE fetchq.jobs AS j SET next_iteration = now() + delay, last_error = message
            WHERE j.id = job.id;
            success := false;
        END;
        processed := processed + 1;
    END LOOP;
END $$;

CREATE FUNCTION fetchq.mnt_job_run(max_jobs integer, OUT success boolean, OUT processed integer)
LANGUAGE sql AS $$
    SELECT r.success, r.processed FROM fetchq.mnt_job_run(interval '5 minutes', $1) AS r
$$;

-- Writes dated in the future (by the wall clock) wait for a later pack, as in
-- v4. The writes of a queue whose row another transaction holds (a drop,
-- truncate or metric_reset of it under way, see schema 10 section 6) wait for
-- a later pack too; the queues whose writes are packed are held FOR KEY SHARE
-- to the end, and writes under a name that is not a queue (user metrics) are
-- packed as before. Otherwise unchanged from schema 5.
CREATE OR REPLACE FUNCTION fetchq.metric_log_pack(OUT affected_rows integer)
LANGUAGE plpgsql AS $$
DECLARE
    owned text[];
BEGIN
    affected_rows := 0;
    IF NOT pg_try_advisory_xact_lock(hashtext('fetchq.metric_log_pack')) THEN
        RETURN;
    END IF;
    SELECT coalesce(array_agg(q.name), '{}') INTO owned
    FROM (SELECT t.name FROM fetchq.queues AS t
          WHERE t.name IN (SELECT w.queue FROM fetchq.metrics_writes AS w)
          FOR KEY SHARE OF t SKIP LOCKED) AS q;
    WITH moved AS (
        DELETE FROM fetchq.metrics_writes AS w
        WHERE w.created_at <= clock_timestamp()
          AND (w.queue = ANY (owned)
               OR NOT EXISTS (SELECT 1 FROM fetchq.queues AS t WHERE t.name = w.queue))
        RETURNING w.id, w.queue, w.metric, w.increment, w.reset
    ), last_reset AS (
        SELECT DISTINCT ON (m.queue, m.metric) m.queue, m.metric, m.id, m.reset
        FROM moved AS m WHERE m.reset IS NOT NULL
        ORDER BY m.queue, m.metric, m.id DESC
    ), folded AS (
        SELECT m.queue, m.metric, max(r.reset) AS reset,
               coalesce(sum(m.increment) FILTER (WHERE r.id IS NULL OR m.id > r.id), 0) AS increment
        FROM moved AS m LEFT JOIN last_reset AS r ON r.queue = m.queue AND r.metric = m.metric
        GROUP BY m.queue, m.metric
    ), upserted AS (
        INSERT INTO fetchq.metrics AS t (queue, metric, value, updated_at)
        SELECT f.queue, f.metric, coalesce(f.reset, 0) + f.increment, now() FROM folded AS f
        ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE
        SET value = CASE WHEN EXISTS (SELECT 1 FROM last_reset AS r
                                      WHERE r.queue = t.queue AND r.metric = t.metric)
                         THEN excluded.value ELSE t.value + excluded.value END,
            updated_at = excluded.updated_at
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM upserted) INTO affected_rows;
END $$;

-- Row triggers of queue_enable_notify: NOTIFY fetchq__<queue>__<event> with the
-- subject, the event being the document's status (pln, pnd, act, cpl, kll);
-- an insert is pln when planned later, else pnd.
CREATE FUNCTION fetchq.doc_notify_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        event := CASE WHEN NEW.next_iteration > now() THEN 'pln' ELSE 'pnd' END;
    ELSE
        event := CASE NEW.status WHEN 0 THEN 'pln' WHEN 1 THEN 'pnd' WHEN 2 THEN 'act'
                                 WHEN 3 THEN 'cpl' WHEN -1 THEN 'kll' ELSE 'null' END;
    END IF;
    PERFORM pg_notify('fetchq__' || TG_ARGV[0] || '__' || event, NEW.subject);
    RETURN NULL;
END $$;

-- Removes the per-document notification triggers (nothing if there are none).
CREATE FUNCTION fetchq.queue_disable_notify(queue text, OUT success boolean)
LANGUAGE plpgsql
SET client_min_messages = warning -- no "does not exist, skipping" notices
AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table((fetchq.queue_get(queue)).name, 'docs');
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', queue || '__notify_insert', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', queue || '__notify_update', tbl);
    success := true;
END $$;

-- v4's per-document notifications: every insert and update of a document sends
-- NOTIFY fetchq__<queue>__<pln|pnd|act|cpl|kll> with its subject. Off by
-- default (a notification per write costs throughput); workers of this engine
-- do not need it (they listen on fetchq_pending). Idempotent. Creating the
-- triggers waits for open transactions that wrote documents of the queue, and
-- holds new writes back meanwhile.
CREATE FUNCTION fetchq.queue_enable_notify(queue text, OUT success boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table((fetchq.queue_get(queue)).name, 'docs');
BEGIN
    PERFORM fetchq.queue_disable_notify(queue);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION fetchq.doc_notify_trigger(%L)',
        queue || '__notify_insert', tbl, queue);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION fetchq.doc_notify_trigger(%L)',
        queue || '__notify_update', tbl, queue);
    success := true;
END $$;

-- A page of a version's documents, whatever their status, in pick order
-- (priority DESC, next_iteration, then subject). v4 had no order.
CREATE FUNCTION fetchq.queue_top(queue text, top_version integer, top_limit integer, top_offset integer)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table((fetchq.queue_get(queue)).name, 'docs');
BEGIN
    PERFORM fetchq.arg_check(top_limit >= 0, format('limit must be 0 or more, got %s', coalesce(top_limit::text, 'NULL')));
    PERFORM fetchq.arg_check(top_offset >= 0, format('offset must be 0 or more, got %s', coalesce(top_offset::text, 'NULL')));
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.payload, d.version, d.priority, d.attempts, d.iterations,
               d.created_at, d.last_iteration, d.next_iteration, NULL::timestamptz
        FROM %s AS d WHERE d.version = $1
        ORDER BY d.priority DESC, d.next_iteration, d.subject
        LIMIT $2 OFFSET $3$q$, tbl)
    USING top_version, top_limit, top_offset;
END $$;

-- v4 dropped the pick index of an old version. One index serves every version
-- here, so there is nothing to drop: true, or false for the current version
-- (which v4 refused to drop).
CREATE FUNCTION fetchq.queue_drop_version(queue text, old_version integer, OUT was_dropped boolean)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    was_dropped := (fetchq.queue_get(queue)).current_version IS DISTINCT FROM old_version;
END $$;

-- Drops the secondary indexes of the queue's documents (the primary key stays),
-- e.g. before a bulk load; queue_create_indexes puts them back. Picks and
-- maintenance stay correct without them, only slower. Always true. Like any
-- DROP INDEX it waits for, then blocks, every use of the queue's documents.
CREATE FUNCTION fetchq.queue_drop_indexes(queue text, OUT was_dropped boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    docs text := (fetchq.queue_get(queue)).name || '__docs';
BEGIN
    EXECUTE format('DROP INDEX IF EXISTS %I.%I, %I.%I, %I.%I',
        'fetchq_data', docs || '_pick_idx', 'fetchq_data', docs || '_planned_idx',
        'fetchq_data', docs || '_active_idx');
    was_dropped := true;
END $$;

-- (Re)creates the document indexes queue_create makes (those missing only).
-- Always true. Concurrent calls take turns (SHARE ROW EXCLUSIVE conflicts with
-- itself; CREATE INDEX IF NOT EXISTS alone lets two calls build the same name).
CREATE FUNCTION fetchq.queue_create_indexes(queue text, OUT was_created boolean)
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
    was_created := true;
END $$;

-- v4 form: its indexes depended on the version and max_attempts; these do not,
-- so both arguments are checked and otherwise ignored.
CREATE FUNCTION fetchq.queue_create_indexes(queue text, index_version integer, max_attempts integer,
                                            OUT was_created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.arg_check(index_version >= 0, format('version must be 0 or more, got %s', coalesce(index_version::text, 'NULL')));
    PERFORM fetchq.arg_check(max_attempts >= 1, format('max_attempts must be at least 1, got %s', coalesce(max_attempts::text, 'NULL')));
    was_created := fetchq.queue_create_indexes(queue);
END $$;

-- queue_truncate for every queue (in name order). A queue dropped meanwhile
-- by another transaction is skipped.
CREATE FUNCTION fetchq.queue_truncate_all(empty boolean DEFAULT false, OUT success boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q text;
BEGIN
    FOR q IN SELECT t.name FROM fetchq.queues AS t ORDER BY t.name LOOP
        BEGIN
            PERFORM fetchq.queue_truncate(q, empty);
        EXCEPTION WHEN SQLSTATE 'FQ002' OR undefined_table THEN
            NULL;
        END;
    END LOOP;
    success := true;
END $$;

-- A packed counter summed over every queue. does_exists is false (and the
-- value 0) when no queue has it. (v4 read a table that no longer existed.)
CREATE FUNCTION fetchq.metric_get_total(metric text, OUT current_value bigint, OUT does_exists boolean)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(m.value), 0)::bigint, count(*) > 0 FROM fetchq.metrics AS m WHERE m.metric = $1
$$;

-- Thins a time series: among the rows of `table_name` whose `field_name` is
-- between `interval_start` and `interval_end` (inclusive), keeps the newest row
-- of each date_trunc(`retain`) bucket and deletes the others. The table needs
-- an `id` column; it runs with the caller's privileges. Returns the rows deleted.
CREATE FUNCTION fetchq.utils_ts_retain(table_name text, field_name text, retain text,
                                       interval_start timestamptz, interval_end timestamptz,
                                       OUT removed_rows bigint)
LANGUAGE plpgsql AS $$
DECLARE
    tbl regclass := table_name::regclass;
BEGIN
    PERFORM fetchq.arg_check(retain IN ('microseconds', 'milliseconds', 'second', 'minute', 'hour', 'day',
                                        'week', 'month', 'quarter', 'year', 'decade', 'century', 'millennium'),
        format('invalid retention unit %s', quote_nullable(left(retain, 80))));
    PERFORM fetchq.arg_check(interval_start IS NOT NULL AND interval_end IS NOT NULL, 'the interval bounds must not be NULL');
    EXECUTE format($q$
        DELETE FROM %1$s AS t
        WHERE t.%2$I BETWEEN $1 AND $2
          AND t.id NOT IN (
            SELECT DISTINCT ON (date_trunc($3, s.%2$I)) s.id FROM %1$s AS s
            WHERE s.%2$I BETWEEN $1 AND $2
            ORDER BY date_trunc($3, s.%2$I), s.%2$I DESC, s.id DESC)$q$, tbl, field_name)
    USING interval_start, interval_end, retain;
    GET DIAGNOSTICS removed_rows = ROW_COUNT;
END $$;
