-- fetchq schema 6: maintenance. Every function here is safe to run from many
-- processes at once: rows are claimed with FOR UPDATE SKIP LOCKED.

-- Promotes up to `max_docs` planned documents whose time has come to pending.
-- (doc_pick does this itself; maintenance keeps the counters current for idle queues.)
CREATE FUNCTION fetchq.mnt_make_pending(queue text, max_docs integer DEFAULT 500, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table(queue, 'docs');
BEGIN
    PERFORM fetchq.queue_get(queue);
    EXECUTE format($q$
        WITH due AS (
            SELECT d.subject FROM %1$s AS d
            WHERE d.status = 0 AND d.next_iteration <= now()
            ORDER BY d.next_iteration LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE %1$s AS d SET status = 1 FROM due WHERE d.subject = due.subject$q$, tbl)
    USING max_docs;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    PERFORM fetchq.metric_write(queue, ARRAY['pnd', 'pln'], ARRAY[affected_rows, -affected_rows]::bigint[]);
END $$;

-- Handles up to `max_docs` orphans (active documents whose lease expired):
-- back to pending while attempts < max_attempts (mode 'retry'), dead otherwise
-- (mode 'dead'). Each orphan writes a row to the queue's log.
CREATE FUNCTION fetchq.mnt_orphans(queue text, max_docs integer, mode text, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    tbl text := fetchq.queue_table(queue, 'docs');
    dead boolean := mode = 'dead';
BEGIN
    EXECUTE format($q$
        WITH expired AS (
            SELECT d.subject FROM %1$s AS d
            WHERE d.status = 2 AND d.next_iteration < now()
              AND (CASE WHEN $3 THEN d.attempts >= $2 ELSE d.attempts < $2 END)
            ORDER BY d.next_iteration LIMIT $1 FOR UPDATE SKIP LOCKED
        ), moved AS (
            UPDATE %1$s AS d
            SET status = CASE WHEN $3 THEN -1 ELSE 1 END, lease_token = NULL,
                iterations = d.iterations + (CASE WHEN $3 THEN 1 ELSE 0 END),
                last_iteration = CASE WHEN $3 THEN now() ELSE d.last_iteration END
            FROM expired WHERE d.subject = expired.subject
            RETURNING d.subject, d.attempts, d.next_iteration
        ), logged AS (
            INSERT INTO %2$s (subject, message, details, ref_id)
            SELECT m.subject,
                   CASE WHEN $3 THEN 'orphan: lease expired, max attempts reached, document is dead'
                        ELSE 'orphan: lease expired, document will be retried' END,
                   jsonb_build_object('attempts', m.attempts, 'max_attempts', $2, 'lease_expired_at', m.next_iteration),
                   'fetchq:orphan'
            FROM moved AS m
            RETURNING 1
        )
        SELECT count(*)::integer FROM logged$q$, tbl, fetchq.queue_table(queue, 'logs'))
    INTO affected_rows
    USING max_docs, q.max_attempts, dead;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['orp', 'err', 'act', 'kll', 'pnd'],
            ARRAY[affected_rows, affected_rows, -affected_rows,
                  CASE WHEN dead THEN affected_rows ELSE 0 END,
                  CASE WHEN dead THEN 0 ELSE affected_rows END]::bigint[]);
    END IF;
END $$;

CREATE FUNCTION fetchq.mnt_reschedule_orphans(queue text, max_docs integer DEFAULT 500, OUT affected_rows integer)
LANGUAGE sql AS $$ SELECT fetchq.mnt_orphans($1, $2, 'retry') $$;

CREATE FUNCTION fetchq.mnt_mark_dead(queue text, max_docs integer DEFAULT 500, OUT affected_rows integer)
LANGUAGE sql AS $$ SELECT fetchq.mnt_orphans($1, $2, 'dead') $$;

-- One maintenance pass over a queue: dead orphans, retried orphans, promotions.
CREATE FUNCTION fetchq.mnt_run(queue text, max_docs integer DEFAULT 500,
                               OUT activated_count integer, OUT rescheduled_count integer, OUT killed_count integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.arg_check(max_docs >= 1, 'limit must be at least 1');
    killed_count := fetchq.mnt_mark_dead(queue, max_docs);
    rescheduled_count := fetchq.mnt_reschedule_orphans(queue, max_docs);
    activated_count := fetchq.mnt_make_pending(queue, max_docs);
END $$;

CREATE FUNCTION fetchq.mnt_run_all(max_docs integer DEFAULT 500)
RETURNS TABLE (queue varchar, activated_count integer, rescheduled_count integer, killed_count integer)
LANGUAGE sql AS $$
    SELECT q.name, r.* FROM fetchq.queues AS q, LATERAL fetchq.mnt_run(q.name, $1) AS r ORDER BY q.name
$$;

-- Claims up to `max_jobs` due maintenance jobs for `lock_duration`.
CREATE FUNCTION fetchq.mnt_job_pick(lock_duration interval, max_jobs integer)
RETURNS SETOF fetchq.jobs
LANGUAGE sql AS $$
    WITH due AS (
        SELECT j.id FROM fetchq.jobs AS j
        WHERE j.next_iteration <= now()
        ORDER BY j.next_iteration, j.attempts LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    UPDATE fetchq.jobs AS j SET next_iteration = now() + $1, attempts = j.attempts + 1
    FROM due WHERE j.id = due.id
    RETURNING j.*
$$;

-- Plans a job's next run `delay` from now.
CREATE FUNCTION fetchq.mnt_job_reschedule(job_id integer, delay interval, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE fetchq.jobs AS j
    SET next_iteration = now() + delay, iterations = j.iterations + 1, attempts = 0,
        last_iteration = now(), last_error = NULL
    WHERE j.id = job_id;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Runs up to `max_jobs` due maintenance jobs. A job that fails keeps its error
-- in fetchq.jobs.last_error, raises a WARNING, is retried after its delay, and
-- makes success false; the other jobs still run.
CREATE FUNCTION fetchq.mnt_job_run(lock_duration interval DEFAULT '5 minutes', max_jobs integer DEFAULT 10,
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

-- Runs every queue's maintenance now, then packs the counters.
CREATE FUNCTION fetchq.mnt(lock_duration interval DEFAULT '5 minutes', OUT processed integer, OUT packed integer)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    UPDATE fetchq.jobs AS j SET next_iteration = now() WHERE j.queue <> '*' AND j.next_iteration > now();
    SELECT * INTO r FROM fetchq.mnt_job_run(lock_duration, 1000000);
    processed := r.processed;
    packed := fetchq.metric_log_pack();
END $$;
