-- fetchq schema 5: error log, trace, counters and snapshots.
--
-- Counters never COUNT(*) the documents: every operation appends deltas to
-- fetchq.metrics_writes, metric_log_pack folds them into fetchq.metrics, and the
-- metric_get* functions read only fetchq.metrics (exact right after a pack).
-- Standard counters: cnt (documents), pln, pnd, act, cpl, kll (per status),
-- ent (entered), drp (dropped), pkd (picked), prc (resolved), res (rescheduled),
-- rej (rejected), orp (orphans), err (rejects + orphans), v<N> (per version).

-- Writes one row to the queue's error log; returns 1.
CREATE FUNCTION fetchq.log_error(queue text, subject text, message text, details jsonb,
                                 ref_id text DEFAULT NULL, OUT queued_logs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.subject_check(subject);
    PERFORM fetchq.arg_check(message IS NOT NULL, 'message must not be NULL');
    EXECUTE format('INSERT INTO %s (subject, message, details, ref_id) VALUES ($1, $2, $3, $4)',
                   fetchq.queue_table(queue, 'logs'))
    USING subject, message, details, ref_id;
    GET DIAGNOSTICS queued_logs = ROW_COUNT;
END $$;

-- Everything known about a subject across every queue: its document rows and
-- its error log entries, in time order ('ASC' or 'DESC').
CREATE FUNCTION fetchq.trace(subject text, sort_order text DEFAULT 'ASC')
RETURNS TABLE (step bigint, created_at timestamptz, queue varchar, type text, info text, details jsonb)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    qname varchar;
    parts text[] := '{}';
BEGIN
    PERFORM fetchq.arg_check(upper(sort_order) IN ('ASC', 'DESC'), 'sort order must be ASC or DESC');
    FOR qname IN SELECT t.name FROM fetchq.queues AS t ORDER BY t.name LOOP
        parts := parts || format(
            $q$SELECT coalesce(d.last_iteration, d.created_at) AS created_at, %1$L::varchar AS queue,
                      'document'::text AS type,
                      CASE d.status WHEN -1 THEN 'dead' WHEN 0 THEN 'planned' WHEN 1 THEN 'pending'
                                    WHEN 2 THEN 'active' WHEN 3 THEN 'completed' END AS info,
                      to_jsonb(d) - 'lease_token' AS details
               FROM %2$s AS d WHERE d.subject = $1
               UNION ALL
               SELECT l.created_at, %1$L::varchar, 'error'::text, l.message,
                      jsonb_build_object('details', l.details, 'ref_id', l.ref_id)
               FROM %3$s AS l WHERE l.subject = $1$q$,
            qname, fetchq.queue_table(qname, 'docs'), fetchq.queue_table(qname, 'logs'));
    END LOOP;
    IF cardinality(parts) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT row_number() OVER (ORDER BY s.created_at %1$s), s.created_at, s.queue, s.type, s.info, s.details
         FROM (%2$s) AS s ORDER BY s.created_at %1$s',
        upper(sort_order), array_to_string(parts, ' UNION ALL '))
    USING subject;
END $$;

-- User metrics: append an increment (or decrement) for any metric name.
CREATE FUNCTION fetchq.metric_log_increment(queue text, metric text, increment bigint, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.arg_check(length(metric) BETWEEN 1 AND 100, 'a metric name is 1 to 100 characters');
    PERFORM fetchq.arg_check(increment IS NOT NULL, 'increment must not be NULL');
    IF increment = 0 THEN
        affected_rows := 0;
        RETURN;
    END IF;
    INSERT INTO fetchq.metrics_writes (queue, metric, increment) VALUES (queue, metric, increment);
    affected_rows := 1;
END $$;

CREATE FUNCTION fetchq.metric_log_decrement(queue text, metric text, decrement bigint, OUT affected_rows integer)
LANGUAGE sql AS $$ SELECT fetchq.metric_log_increment($1, $2, -$3) $$;

-- User metrics: append an absolute value; it replaces earlier writes when packed.
CREATE FUNCTION fetchq.metric_log_set(queue text, metric text, value bigint, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.arg_check(length(metric) BETWEEN 1 AND 100, 'a metric name is 1 to 100 characters');
    PERFORM fetchq.arg_check(value IS NOT NULL, 'value must not be NULL');
    INSERT INTO fetchq.metrics_writes (queue, metric, reset) VALUES (queue, metric, value);
    affected_rows := 1;
END $$;

-- Folds every visible write into fetchq.metrics. Only one packer runs at a
-- time (a second caller returns 0 at once). Returns the number of writes packed.
CREATE FUNCTION fetchq.metric_log_pack(OUT affected_rows integer)
LANGUAGE plpgsql AS $$
BEGIN
    affected_rows := 0;
    IF NOT pg_try_advisory_xact_lock(hashtext('fetchq.metric_log_pack')) THEN
        RETURN;
    END IF;
    WITH moved AS (
        DELETE FROM fetchq.metrics_writes RETURNING id, queue, metric, increment, reset
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

-- Writes a counter directly (bypassing the write-ahead log).
CREATE FUNCTION fetchq.metric_set(queue text, metric text, value bigint,
                                  OUT current_value bigint, OUT was_created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.arg_check(length(metric) BETWEEN 1 AND 100, 'a metric name is 1 to 100 characters');
    INSERT INTO fetchq.metrics AS t (queue, metric, value, updated_at) VALUES (queue, metric, value, now())
    ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE SET value = excluded.value, updated_at = now()
    RETURNING t.value, (xmax = 0) INTO current_value, was_created;
END $$;

-- Adds to a counter directly (bypassing the write-ahead log).
CREATE FUNCTION fetchq.metric_increment(queue text, metric text, increment bigint,
                                        OUT current_value bigint, OUT was_created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.arg_check(length(metric) BETWEEN 1 AND 100, 'a metric name is 1 to 100 characters');
    INSERT INTO fetchq.metrics AS t (queue, metric, value, updated_at) VALUES (queue, metric, increment, now())
    ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE SET value = t.value + excluded.value, updated_at = now()
    RETURNING t.value, (xmax = 0) INTO current_value, was_created;
END $$;

-- One packed counter. does_exists is false (and the value 0) when never written.
CREATE FUNCTION fetchq.metric_get(queue text, metric text,
                                  OUT current_value bigint, OUT last_update timestamptz, OUT does_exists boolean)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    SELECT m.value, m.updated_at INTO current_value, last_update
    FROM fetchq.metrics AS m WHERE m.queue = queue AND m.metric = metric;
    does_exists := FOUND;
    current_value := coalesce(current_value, 0);
END $$;

-- Every packed counter of a queue.
CREATE FUNCTION fetchq.metric_get(queue text)
RETURNS TABLE (metric varchar, current_value bigint, last_update timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    RETURN QUERY SELECT m.metric, m.value, m.updated_at FROM fetchq.metrics AS m
                 WHERE m.queue = queue ORDER BY m.metric;
END $$;

-- The standard counters of a queue in one row (FQ002 for an unknown queue).
CREATE FUNCTION fetchq.metric_get_common(queue text,
    OUT cnt bigint, OUT pnd bigint, OUT pln bigint, OUT act bigint, OUT cpl bigint, OUT kll bigint,
    OUT ent bigint, OUT drp bigint, OUT pkd bigint, OUT prc bigint, OUT res bigint, OUT rej bigint,
    OUT orp bigint, OUT err bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    v bigint[];
BEGIN
    PERFORM fetchq.queue_get(queue);
    SELECT array_agg(coalesce(m.value, 0) ORDER BY u.n) INTO v
    FROM unnest(ARRAY['cnt', 'pnd', 'pln', 'act', 'cpl', 'kll', 'ent', 'drp', 'pkd', 'prc', 'res', 'rej', 'orp', 'err'])
         WITH ORDINALITY AS u(metric, n)
    LEFT JOIN fetchq.metrics AS m ON m.queue = queue AND m.metric = u.metric;
    cnt := v[1]; pnd := v[2]; pln := v[3]; act := v[4]; cpl := v[5]; kll := v[6]; ent := v[7];
    drp := v[8]; pkd := v[9]; prc := v[10]; res := v[11]; rej := v[12]; orp := v[13]; err := v[14];
END $$;

-- The standard counters of every queue.
CREATE FUNCTION fetchq.metric_get_all()
RETURNS TABLE (queue varchar, cnt bigint, pnd bigint, pln bigint, act bigint, cpl bigint, kll bigint,
               ent bigint, drp bigint, pkd bigint, prc bigint, res bigint, rej bigint, orp bigint, err bigint)
LANGUAGE sql STABLE AS $$
    SELECT q.name, c.* FROM fetchq.queues AS q, LATERAL fetchq.metric_get_common(q.name) AS c
    ORDER BY q.name
$$;

-- The real per-status counts (COUNT over the documents): slow, for repair and checks.
CREATE FUNCTION fetchq.metric_compute(queue text,
    OUT cnt bigint, OUT pln bigint, OUT pnd bigint, OUT act bigint, OUT kll bigint, OUT cpl bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    EXECUTE format($q$
        SELECT count(*), count(*) FILTER (WHERE status = 0), count(*) FILTER (WHERE status = 1),
               count(*) FILTER (WHERE status = 2), count(*) FILTER (WHERE status = -1),
               count(*) FILTER (WHERE status = 3)
        FROM %s$q$, fetchq.queue_table(queue, 'docs'))
    INTO cnt, pln, pnd, act, kll, cpl;
END $$;

CREATE FUNCTION fetchq.metric_compute_all()
RETURNS TABLE (queue varchar, cnt bigint, pln bigint, pnd bigint, act bigint, kll bigint, cpl bigint)
LANGUAGE sql STABLE AS $$
    SELECT q.name, c.* FROM fetchq.queues AS q, LATERAL fetchq.metric_compute(q.name) AS c
    ORDER BY q.name
$$;

-- Repairs the status counters (cnt, pln, pnd, act, kll, cpl, v<N>) from a real
-- count. Writers to the queue wait for the few moments it takes, so the result
-- is exact. Returns the computed counts.
CREATE FUNCTION fetchq.metric_reset(queue text,
    OUT cnt bigint, OUT pln bigint, OUT pnd bigint, OUT act bigint, OUT kll bigint, OUT cpl bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table(queue, 'docs');
BEGIN
    PERFORM fetchq.queue_get(queue);
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', tbl);
    SELECT c.cnt, c.pln, c.pnd, c.act, c.kll, c.cpl INTO cnt, pln, pnd, act, kll, cpl
    FROM fetchq.metric_compute(queue) AS c;
    DELETE FROM fetchq.metrics_writes AS w
    WHERE w.queue = queue AND (w.metric IN ('cnt', 'pln', 'pnd', 'act', 'kll', 'cpl') OR w.metric ~ '^v[0-9]+$');
    DELETE FROM fetchq.metrics AS m
    WHERE m.queue = queue AND m.metric ~ '^v[0-9]+$';
    INSERT INTO fetchq.metrics AS t (queue, metric, value, updated_at)
    SELECT queue, u.metric, u.value, now()
    FROM unnest(ARRAY['cnt', 'pln', 'pnd', 'act', 'kll', 'cpl'], ARRAY[cnt, pln, pnd, act, kll, cpl]) AS u(metric, value)
    ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE SET value = excluded.value, updated_at = now();
    EXECUTE format($q$
        INSERT INTO fetchq.metrics AS t (queue, metric, value, updated_at)
        SELECT $1, 'v' || d.version, count(*), now() FROM %s AS d GROUP BY d.version$q$, tbl)
    USING queue;
END $$;

CREATE FUNCTION fetchq.metric_reset_all() RETURNS TABLE (queue varchar, cnt bigint, pln bigint, pnd bigint, act bigint, kll bigint, cpl bigint)
LANGUAGE sql AS $$
    SELECT q.name, c.* FROM fetchq.queues AS q, LATERAL fetchq.metric_reset(q.name) AS c ORDER BY q.name
$$;

-- Copies the queue's current counters into its time series `<queue>__metrics`.
-- With a metric name or a JSON array of names, only those.
CREATE FUNCTION fetchq.metric_snap(queue text, whitelist jsonb DEFAULT NULL,
                                   OUT success boolean, OUT inserts integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(whitelist IS NULL OR jsonb_typeof(whitelist) = 'array', 'whitelist must be a JSON array of metric names');
    EXECUTE format($q$
        INSERT INTO %s (metric, value)
        SELECT m.metric, m.value FROM fetchq.metrics AS m
        WHERE m.queue = $1 AND ($2::jsonb IS NULL OR $2 ? m.metric)$q$, fetchq.queue_table(queue, 'metrics'))
    USING queue, whitelist;
    GET DIAGNOSTICS inserts = ROW_COUNT;
    success := true;
END $$;

CREATE FUNCTION fetchq.metric_snap(queue text, metric text, OUT success boolean, OUT inserts integer)
LANGUAGE sql AS $$ SELECT * FROM fetchq.metric_snap($1, jsonb_build_array($2)) $$;

-- Empties a queue's documents (with empty = true also its logs and snapshots)
-- and resets its counters.
CREATE FUNCTION fetchq.queue_truncate(queue text, empty boolean DEFAULT false, OUT success boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    EXECUTE format('TRUNCATE %s', fetchq.queue_table(queue, 'docs'));
    IF empty THEN
        EXECUTE format('TRUNCATE %s, %s', fetchq.queue_table(queue, 'logs'), fetchq.queue_table(queue, 'metrics'));
        DELETE FROM fetchq.metrics AS m WHERE m.queue = queue;
        DELETE FROM fetchq.metrics_writes AS w WHERE w.queue = queue;
    END IF;
    PERFORM fetchq.metric_reset(queue);
    success := true;
END $$;
