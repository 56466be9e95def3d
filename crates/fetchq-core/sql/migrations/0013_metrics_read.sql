-- fetchq schema 13: counters exact at read, the lag of a queue, and one read
-- for a metrics exporter.
--
-- 1. Exact reads: metric_get, metric_get_common (and so metric_get_all) and
--    metric_get_total add the counter writes not packed yet to the packed
--    value, folded the way metric_log_pack folds them (the last
--    metric_log_set of a metric replaces what came before it). They read the
--    packed row and the pending writes in one statement, so a pack committing
--    meanwhile is seen entirely or not at all. The work is one aggregate pass
--    over the writes not packed yet (no index: they are few, since
--    maintenance packs every second, and another index on this insert-only
--    log cost pushes about 10% in a measurement), plus a probe by primary key
--    per metric with a pending metric_log_set. Without any maintenance the
--    pass grows with the writes: about 40 ms per 100,000 writes on a 2-core
--    host (a real count of 150,000 documents took as long), whatever the
--    number of documents.
-- 2. kld: a counter of kills (documents that became dead: rejected or orphaned
--    past max_attempts, killed by the worker or an operator). kll is the number
--    of dead documents now and goes down when they are dropped or played, so it
--    cannot serve as a count of events. A trigger adds a kld write for every
--    kll write that goes up, so every writer is covered; it counts from 0 from
--    this schema on.
-- 3. queue_lag(queue): how late the oldest due document is, in seconds, by
--    index probes only (see the function).
-- 4. metric_export(): every queue's counters, paused, version, error-log rows
--    and lag in one call, O(queues), for GET /metrics.

CREATE FUNCTION fetchq.metric_writes_killed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fetchq.metrics_writes (queue, metric, increment, created_at)
    VALUES (NEW.queue, 'kld', NEW.increment, NEW.created_at);
    RETURN NULL;
END $$;

CREATE TRIGGER metrics_writes_killed AFTER INSERT ON fetchq.metrics_writes
FOR EACH ROW WHEN (NEW.metric = 'kll' AND NEW.increment > 0)
EXECUTE FUNCTION fetchq.metric_writes_killed();

-- The exact value of counters: the packed value plus the writes not packed
-- yet (after the last metric_log_set of a metric among them, that value plus
-- the increments after it): what a pack now would make of them (writes dated
-- in the future wait for their time here too). Only `only_queue`'s counters when given (else
-- every queue's, and names that are not queues), only the metrics named in
-- `only_metrics` when given. A counter neither packed nor written is absent.
CREATE FUNCTION fetchq.metric_read(only_queue text DEFAULT NULL, only_metrics text[] DEFAULT NULL)
RETURNS TABLE (queue varchar, metric varchar, current_value bigint, last_update timestamptz)
LANGUAGE plpgsql STABLE
SET jit = off -- a few hundred thousand writes are costed high enough to JIT, which costs more than it saves
AS $$
DECLARE
    -- writes dated in the future wait, as they do for metric_log_pack
    cond_w text := 'w.created_at <= $3';
    cond_m text := 'true';
    at timestamptz := clock_timestamp();
BEGIN
    IF only_queue IS NOT NULL THEN
        cond_w := cond_w || ' AND w.queue = $1';
        cond_m := 'm.queue = $1';
    END IF;
    IF only_metrics IS NOT NULL THEN
        cond_w := cond_w || ' AND w.metric = ANY ($2)';
        cond_m := cond_m || ' AND m.metric = ANY ($2)';
    END IF;
    -- dynamic: each call is planned for the filters it has (a generic plan
    -- for "$1 IS NULL OR queue = $1" cannot use the primary key of metrics)
    RETURN QUERY EXECUTE format($q$
        WITH pending AS (
            SELECT w.queue, w.metric, sum(w.increment) AS increment,
                   max(w.id) FILTER (WHERE w.reset IS NOT NULL) AS reset_id,
                   max(w.created_at) AS written_at
            FROM fetchq.metrics_writes AS w WHERE %1$s
            GROUP BY w.queue, w.metric
        ), folded AS (
            -- after a set: its value plus the increments after it (sets are
            -- rare: a probe and a range scan by primary key, from the set on)
            SELECT p.queue, p.metric, p.written_at, p.reset_id IS NOT NULL AS was_set,
                   CASE WHEN p.reset_id IS NULL THEN coalesce(p.increment, 0)
                        ELSE coalesce((SELECT r.reset FROM fetchq.metrics_writes AS r WHERE r.id = p.reset_id), 0)
                           + coalesce((SELECT sum(x.increment) FROM fetchq.metrics_writes AS x
                                       WHERE x.id > p.reset_id AND x.queue = p.queue AND x.metric = p.metric
                                         AND x.created_at <= $3), 0)
                   END AS value
            FROM pending AS p
        ), packed AS (
            SELECT m.queue, m.metric, m.value, m.updated_at FROM fetchq.metrics AS m WHERE %2$s
        )
        SELECT coalesce(m.queue, p.queue)::varchar, coalesce(m.metric, p.metric)::varchar,
               (CASE WHEN p.was_set THEN p.value ELSE coalesce(m.value, 0) + coalesce(p.value, 0) END)::bigint,
               greatest(m.updated_at, p.written_at)
        FROM packed AS m FULL JOIN folded AS p ON p.queue = m.queue AND p.metric = m.metric$q$,
        cond_w, cond_m)
    USING only_queue, only_metrics, at;
END $$;

-- As in schema 5, exact (packed value plus pending writes).
CREATE OR REPLACE FUNCTION fetchq.metric_get(queue text, metric text,
                                             OUT current_value bigint, OUT last_update timestamptz, OUT does_exists boolean)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    SELECT r.current_value, r.last_update INTO current_value, last_update
    FROM fetchq.metric_read(queue, ARRAY[metric]) AS r;
    does_exists := FOUND;
    current_value := coalesce(current_value, 0);
END $$;

-- As in schema 5, exact (packed value plus pending writes).
CREATE OR REPLACE FUNCTION fetchq.metric_get(queue text)
RETURNS TABLE (metric varchar, current_value bigint, last_update timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    RETURN QUERY SELECT r.metric, r.current_value, r.last_update
                 FROM fetchq.metric_read(queue) AS r ORDER BY r.metric;
END $$;

-- As in schema 5, exact (packed value plus pending writes).
CREATE OR REPLACE FUNCTION fetchq.metric_get_common(queue text,
    OUT cnt bigint, OUT pnd bigint, OUT pln bigint, OUT act bigint, OUT cpl bigint, OUT kll bigint,
    OUT ent bigint, OUT drp bigint, OUT pkd bigint, OUT prc bigint, OUT res bigint, OUT rej bigint,
    OUT orp bigint, OUT err bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    names text[] := ARRAY['cnt', 'pnd', 'pln', 'act', 'cpl', 'kll', 'ent', 'drp', 'pkd', 'prc', 'res', 'rej', 'orp', 'err'];
    v bigint[];
BEGIN
    PERFORM fetchq.queue_get(queue);
    SELECT array_agg(coalesce(r.current_value, 0) ORDER BY u.n) INTO v
    FROM unnest(names) WITH ORDINALITY AS u(metric, n)
    LEFT JOIN fetchq.metric_read(queue, names) AS r ON r.metric = u.metric;
    cnt := v[1]; pnd := v[2]; pln := v[3]; act := v[4]; cpl := v[5]; kll := v[6]; ent := v[7];
    drp := v[8]; pkd := v[9]; prc := v[10]; res := v[11]; rej := v[12]; orp := v[13]; err := v[14];
END $$;

-- As in schema 5, exact, in one pass over the pending writes for every queue
-- (calling metric_get_common per queue would make one pass per queue).
CREATE OR REPLACE FUNCTION fetchq.metric_get_all()
RETURNS TABLE (queue varchar, cnt bigint, pnd bigint, pln bigint, act bigint, cpl bigint, kll bigint,
               ent bigint, drp bigint, pkd bigint, prc bigint, res bigint, rej bigint, orp bigint, err bigint)
LANGUAGE sql STABLE AS $$
    SELECT q.name,
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'cnt'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'pnd'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'pln'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'act'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'cpl'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'kll'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'ent'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'drp'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'pkd'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'prc'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'res'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'rej'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'orp'), 0),
           coalesce(max(r.current_value) FILTER (WHERE r.metric = 'err'), 0)
    FROM fetchq.queues AS q
    LEFT JOIN fetchq.metric_read(NULL, ARRAY['cnt', 'pnd', 'pln', 'act', 'cpl', 'kll', 'ent', 'drp', 'pkd', 'prc',
                                             'res', 'rej', 'orp', 'err']) AS r ON r.queue = q.name
    GROUP BY q.name
    ORDER BY q.name
$$;

-- As in schema 11, exact (packed value plus pending writes).
CREATE OR REPLACE FUNCTION fetchq.metric_get_total(metric text, OUT current_value bigint, OUT does_exists boolean)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(r.current_value), 0)::bigint, count(*) > 0 FROM fetchq.metric_read(NULL, ARRAY[$1]) AS r
$$;

-- How late the oldest due document of the queue is, in seconds (0 when none
-- is due): now() minus the earliest next_iteration among the pending
-- documents and the planned ones whose time has come. Index probes only,
-- never a scan of the documents: the planned one is the first entry of
-- <queue>__docs_planned_idx; the pending ones are found by a skip scan of
-- <queue>__docs_pick_idx (version, priority DESC, next_iteration): one probe
-- per (version, priority) pair present among the pending documents, whose
-- first entry is that pair's earliest. (Few pairs in practice; a queue whose
-- pending documents have thousands of distinct priorities costs that many
-- probes.)
CREATE FUNCTION fetchq.queue_lag(queue text) RETURNS double precision
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table((fetchq.queue_get(queue)).name, 'docs');
    oldest timestamptz;
BEGIN
    EXECUTE format($q$
        WITH RECURSIVE pairs AS (
            (SELECT d.version, d.priority, d.next_iteration FROM %1$s AS d
             WHERE d.status = 1 ORDER BY d.version, d.priority DESC, d.next_iteration LIMIT 1)
            UNION ALL
            SELECT n.version, n.priority, n.next_iteration
            FROM pairs AS s, LATERAL (
                (SELECT d.version, d.priority, d.next_iteration FROM %1$s AS d
                 WHERE d.status = 1 AND d.version = s.version AND d.priority < s.priority
                 ORDER BY d.version, d.priority DESC, d.next_iteration LIMIT 1)
                UNION ALL
                (SELECT d.version, d.priority, d.next_iteration FROM %1$s AS d
                 WHERE d.status = 1 AND d.version > s.version
                 ORDER BY d.version, d.priority DESC, d.next_iteration LIMIT 1)
                LIMIT 1) AS n
        )
        SELECT least((SELECT min(p.next_iteration) FROM pairs AS p),
                     (SELECT d.next_iteration FROM %1$s AS d WHERE d.status = 0 AND d.next_iteration <= now()
                      ORDER BY d.next_iteration LIMIT 1))$q$, tbl)
    INTO oldest;
    RETURN greatest(coalesce(extract(epoch FROM now() - oldest)::double precision, 0), 0);
END $$;

-- What a metrics exporter reads, in one call: for every queue its counters
-- (is_counter true; exact, as metric_get: the standard ones, kld, v<N> and
-- the user's), and the queue's state (is_counter false, so a user counter of
-- the same name cannot be mistaken for it): 'paused' (1 or 0),
-- 'current_version', 'error_log_rows' (the span of the error log's ids,
-- max - min + 1, two index probes: never a COUNT, an upper bound when rows in
-- between were deleted) and 'lag_seconds' (queue_lag). The work is
-- O(queues + counters + writes not packed yet), never O(documents). A queue
-- dropped while this runs is left out.
CREATE FUNCTION fetchq.metric_export()
RETURNS TABLE (queue varchar, metric varchar, value double precision, is_counter boolean)
LANGUAGE plpgsql STABLE
SET jit = off
AS $$
DECLARE
    q fetchq.queues;
    logs_span bigint;
    lag double precision;
BEGIN
    RETURN QUERY
        SELECT r.queue, r.metric, r.current_value::double precision, true
        FROM fetchq.metric_read() AS r
        WHERE r.queue IN (SELECT t.name FROM fetchq.queues AS t)
        ORDER BY r.queue, r.metric;
    FOR q IN SELECT * FROM fetchq.queues AS t ORDER BY t.name LOOP
        BEGIN
            EXECUTE format('SELECT max(l.id) - min(l.id) + 1 FROM %s AS l', fetchq.queue_table(q.name, 'logs'))
            INTO logs_span;
            lag := fetchq.queue_lag(q.name);
        EXCEPTION WHEN undefined_table OR SQLSTATE 'FQ002' THEN
            CONTINUE;
        END;
        queue := q.name;
        is_counter := false;
        metric := 'paused'; value := CASE WHEN q.is_active THEN 0 ELSE 1 END; RETURN NEXT;
        metric := 'current_version'; value := q.current_version; RETURN NEXT;
        metric := 'error_log_rows'; value := coalesce(logs_span, 0); RETURN NEXT;
        metric := 'lag_seconds'; value := lag; RETURN NEXT;
    END LOOP;
END $$;
