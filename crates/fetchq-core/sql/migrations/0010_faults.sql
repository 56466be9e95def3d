-- fetchq schema 10: fixes for faults found in review.
--
-- 1. Idle workers: queue_next_due(queue, version), the time an idle pool of one
--    version may sleep until; nothing for a paused queue, and documents that
--    were due before the pool's last pick (row-locked by someone else) do not
--    count, so an idle pool cannot spin on them.
-- 2. Backoff: retry_backoff is computed in seconds and capped, so a large base
--    delay and many attempts can no longer overflow an interval.
-- 3. Wake-ups: the notification debounce is taken at commit time, by a deferred
--    constraint trigger on the counter rows that say documents became pending
--    or entered the queue, instead of for the whole life of the pushing
--    transaction.
-- 4. Counter repair: metric_reset and queue_truncate are serialized with each
--    other and with metric_log_pack, per queue (defined in 6, with the lock
--    order they share with drop and maintenance).
-- 5. Pushing a planned document wakes idle workers too (they sleep until the
--    earliest planned time they know of).

-- The time an idle worker picking `version` of the queue should look again:
-- the earliest planned time of a planned document of that version, NULL when
-- there is none or the queue is paused (queue_resume sends a notification).
-- Planned documents due more than 100 ms ago are not counted: a pick right
-- before this call would have promoted them unless another transaction holds
-- their row, and waiting for that one must not become a busy loop. At most
-- 1,000 planned documents of other versions are looked at; when that many come
-- first, the time of the last of them is returned (look again then).
CREATE FUNCTION fetchq.queue_next_due(queue text, version integer, OUT next_iteration timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
BEGIN
    PERFORM fetchq.arg_check(version >= 0, format('version must be 0 or more, got %s', coalesce(version::text, 'NULL')));
    IF NOT q.is_active THEN
        RETURN;
    END IF;
    EXECUTE format($q$
        SELECT coalesce(min(p.next_iteration) FILTER (WHERE p.version = $1),
                        CASE WHEN count(*) >= 1000 THEN max(p.next_iteration) END)
        FROM (SELECT d.version, d.next_iteration FROM %s AS d
              WHERE d.status = 0 AND d.next_iteration > clock_timestamp() - interval '100 milliseconds'
              ORDER BY d.next_iteration LIMIT 1000) AS p$q$, fetchq.queue_table(queue, 'docs'))
    INTO next_iteration
    USING version;
END $$;

-- Delay before a rejected document is retried: delay * 2^(attempts-1), capped at
-- max_delay, times (1 +/- jitter * r) with r in [-1, 1], and never more than
-- 365 days whatever the settings (computed in seconds: the interval arithmetic
-- of schema 4 overflowed once attempts reached 31 with a base of hours).
CREATE OR REPLACE FUNCTION fetchq.retry_backoff(attempts integer, delay interval, max_delay interval,
                                                jitter double precision, r double precision) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT make_interval(secs => least(
        least(extract(epoch FROM $3)::float8,
              extract(epoch FROM $2)::float8 * power(2::float8, least(greatest($1, 1) - 1, 1000)::float8))
        * (1 + $4 * $5),
        31536000::float8))
$$;

-- At commit, once per counter row saying documents became pending ('pnd' up)
-- or entered the queue ('ent': pushes, pending or planned, since an idle
-- worker sleeps until the earliest planned time it knows): NOTIFY
-- fetchq_pending unless another transaction committing at the same moment
-- already notifies for the queue (NOTIFY serializes commits; one wake-up is
-- enough). The debounce lock is held from here to the end of the commit only,
-- so an open transaction never mutes other pushes, and a transaction that
-- rolls back never fires. Every writer of these rows (the per-queue
-- statements, metric_write and so every SQL function) is covered without
-- calling anything; a second row of the same transaction re-takes the lock it
-- holds and its notification is folded into the first by PostgreSQL.
-- (Schema 10 first kept a row per wish in fetchq.pending_hints with its own
-- trigger: that insert, delete and set_config cost 1 push in 5 of throughput
-- for one-document pushes, pgbench with 8 clients.)
CREATE FUNCTION fetchq.pending_hint_counted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- key space 0x66710001 is fetchq's notification debounce, per queue
    IF pg_try_advisory_xact_lock(1718681601, hashtext(NEW.queue)) THEN
        PERFORM pg_notify('fetchq_pending', NEW.queue);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER metrics_writes_wake AFTER INSERT ON fetchq.metrics_writes
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
WHEN ((NEW.metric = 'pnd' OR NEW.metric = 'ent') AND NEW.increment > 0)
EXECUTE FUNCTION fetchq.pending_hint_counted();

-- For callers that make documents pending without writing counters (the
-- engine itself always writes them): wake-up wishes of open transactions, one
-- row per (transaction, queue); the
-- deferred trigger below turns each into a notification at commit and deletes
-- it. Rows of a transaction that rolls back vanish with it.
CREATE UNLOGGED TABLE fetchq.pending_hints (
    xid   xid8 NOT NULL DEFAULT pg_current_xact_id(),
    queue text NOT NULL,
    CONSTRAINT pending_hints_pkey PRIMARY KEY (xid, queue)
);

-- At commit: NOTIFY fetchq_pending unless another transaction committing at
-- the same moment already notifies for the queue (NOTIFY serializes commits;
-- one wake-up is enough). The debounce lock is held from here to the end of
-- the commit only, so an open transaction never mutes other pushes.
CREATE FUNCTION fetchq.pending_hint_send() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fetchq.pending_hints AS h WHERE h.xid = NEW.xid AND h.queue = NEW.queue;
    -- key space 0x66710001 is fetchq's notification debounce, per queue
    IF pg_try_advisory_xact_lock(1718681601, hashtext(NEW.queue)) THEN
        PERFORM pg_notify('fetchq_pending', NEW.queue);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER pending_hints_send AFTER INSERT ON fetchq.pending_hints
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fetchq.pending_hint_send();

-- Asks for a wake-up notification for the queue when the transaction commits
-- (once per transaction and queue; nothing if it rolls back). Returns true
-- when this call registered the wish, false when it was already registered.
CREATE OR REPLACE FUNCTION fetchq.pending_hint(queue text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF $1 IS NULL OR $1 !~ '^[a-z][a-z0-9_]{0,39}$'
       OR current_setting('fetchq.hint_' || $1, true) IS NOT DISTINCT FROM 'on' THEN
        RETURN false;
    END IF;
    PERFORM set_config('fetchq.hint_' || $1, 'on', true);
    INSERT INTO fetchq.pending_hints (queue) VALUES ($1) ON CONFLICT DO NOTHING;
    RETURN true;
END $$;

-- As in schema 1 again: the rows it writes ask for the wake-up themselves
-- (trigger metrics_writes_wake above), for documents that became pending and,
-- now, for documents entering the queue as planned too: an idle worker sleeps
-- until the earliest planned time it knows, so it has to hear of an earlier
-- one pushed while it sleeps.
CREATE OR REPLACE FUNCTION fetchq.metric_write(queue text, metrics text[], increments bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1, u.m, u.i FROM unnest($2, $3) AS u(m, i) WHERE u.i <> 0
$$;

-- 6. Dropping, truncating or repairing a queue while maintenance runs on it:
--    queue_drop took the queue's tables and then waited for its job rows,
--    which a running mnt_job_run holds while it waits for those tables (a
--    deadlock, 40P01); maintenance that woke up after a drop failed on the
--    vanished tables. Every function touching a queue's tables now takes the
--    queue's locks in one order:
--      1. the packing lock (advisory), taken only by metric_log_pack, which
--         only tries it: it keeps two packers apart and nothing else;
--      2. the queue's rows of fetchq.jobs, in id order (mnt_job_pick holds
--         them, SKIP LOCKED, for the whole maintenance transaction);
--      3. the queue's row of fetchq.queues: FOR KEY SHARE by maintenance
--         (settings updates do not conflict) and, SKIP LOCKED, by
--         metric_log_pack for the queues whose counter writes it folds;
--         FOR UPDATE or DELETE by operations that replace or remove the
--         queue's tables or counters (drop, truncate, metric_reset), which
--         so keep packers off the queue's counters without a global lock;
--      4. the queue's tables, documents first, then logs, then snapshots;
--      5. the counter rows of fetchq.metrics and fetchq.metrics_writes.
--    Maintenance never waits for 1 or 2 (it tries or skips them), and
--    metric_log_pack waits for nothing before 5, so neither can close a cycle
--    with an operation holding them. Operations on several queues take each
--    queue's locks in queue name order.

-- Takes locks 2 and 3 (see above) for an operation that replaces or removes
-- the queue's tables or counters; held to the end of the transaction. Waits
-- for maintenance and packing running on the queue to commit, and keeps new
-- maintenance and packing of the queue out (other queues are not affected).
-- FQ002 when the queue does not exist (or was dropped while this waited).
CREATE FUNCTION fetchq.queue_lock_exclusive(queue text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM 1 FROM fetchq.jobs AS j WHERE j.queue = queue ORDER BY j.id FOR UPDATE;
    PERFORM 1 FROM fetchq.queues AS t WHERE t.name = queue FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM fetchq.queue_get(queue);
    END IF;
END $$;

-- As in schema 2, with the lock order above: the queue's job rows and its
-- queue row are taken before its tables, so running maintenance and packing of
-- the queue finish first and new maintenance and packing skip the queue.
CREATE OR REPLACE FUNCTION fetchq.queue_drop(queue text, OUT was_dropped boolean, OUT queue_id integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM 1 FROM fetchq.jobs AS j WHERE j.queue = queue ORDER BY j.id FOR UPDATE;
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

-- As in schema 5, with the lock order: running maintenance of the
-- queue finishes before the tables are truncated. FQ002 for a queue dropped
-- meanwhile (queue_truncate_all skips it).
CREATE OR REPLACE FUNCTION fetchq.queue_truncate(queue text, empty boolean DEFAULT false, OUT success boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_lock_exclusive(queue);
    EXECUTE format('TRUNCATE %s', fetchq.queue_table(queue, 'docs'));
    IF empty THEN
        EXECUTE format('TRUNCATE %s, %s', fetchq.queue_table(queue, 'logs'), fetchq.queue_table(queue, 'metrics'));
        DELETE FROM fetchq.metrics AS m WHERE m.queue = queue;
        DELETE FROM fetchq.metrics_writes AS w WHERE w.queue = queue;
    END IF;
    PERFORM fetchq.metric_reset(queue);
    success := true;
END $$;

-- As in schema 5, but serialized per queue by queue_lock_exclusive
-- (held to the end): repairs, truncates, maintenance and packing of the queue
-- wait for each other, those of other queues do not. A queue dropped while
-- this waited is FQ002, not a missing table. The inserts tolerate counter
-- rows written meanwhile (ON CONFLICT: two repairs used to collide on them).
CREATE OR REPLACE FUNCTION fetchq.metric_reset(queue text,
    OUT cnt bigint, OUT pln bigint, OUT pnd bigint, OUT act bigint, OUT kll bigint, OUT cpl bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table(queue, 'docs');
BEGIN
    PERFORM fetchq.queue_lock_exclusive(queue);
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
        SELECT $1, 'v' || d.version, count(*), now() FROM %s AS d GROUP BY d.version
        ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE SET value = excluded.value, updated_at = now()$q$, tbl)
    USING queue;
END $$;

-- As in schema 5, queue by queue in name order (the lock order above); a
-- queue dropped after the list was read is skipped instead of failing the
-- repair.
CREATE OR REPLACE FUNCTION fetchq.metric_reset_all()
RETURNS TABLE (queue varchar, cnt bigint, pln bigint, pnd bigint, act bigint, kll bigint, cpl bigint)
LANGUAGE plpgsql AS $$
DECLARE
    qname varchar;
BEGIN
    FOR qname IN SELECT t.name FROM fetchq.queues AS t ORDER BY t.name LOOP
        BEGIN
            RETURN QUERY SELECT qname, c.* FROM fetchq.metric_reset(qname) AS c;
        EXCEPTION WHEN SQLSTATE 'FQ002' THEN
            NULL;
        END;
    END LOOP;
END $$;

-- As in schema 6, but the queue's row is held FOR KEY SHARE before its tables
-- are touched: a queue_drop or queue_truncate under way finishes first, and a
-- queue dropped meanwhile is FQ002 instead of a missing table.
CREATE OR REPLACE FUNCTION fetchq.mnt_run(queue text, max_docs integer DEFAULT 500,
                                          OUT activated_count integer, OUT rescheduled_count integer, OUT killed_count integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.arg_check(max_docs >= 1, 'limit must be at least 1');
    PERFORM fetchq.queue_name_check(queue);
    PERFORM 1 FROM fetchq.queues AS t WHERE t.name = queue FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM fetchq.queue_get(queue);
    END IF;
    killed_count := fetchq.mnt_mark_dead(queue, max_docs);
    rescheduled_count := fetchq.mnt_reschedule_orphans(queue, max_docs);
    activated_count := fetchq.mnt_make_pending(queue, max_docs);
END $$;

-- As in schema 6, but a queue dropped after the list was read is skipped
-- instead of failing the whole pass.
CREATE OR REPLACE FUNCTION fetchq.mnt_run_all(max_docs integer DEFAULT 500)
RETURNS TABLE (queue varchar, activated_count integer, rescheduled_count integer, killed_count integer)
LANGUAGE plpgsql AS $$
DECLARE
    qname varchar;
BEGIN
    FOR qname IN SELECT t.name FROM fetchq.queues AS t ORDER BY t.name LOOP
        PERFORM 1 FROM fetchq.queues AS t WHERE t.name = qname FOR KEY SHARE;
        CONTINUE WHEN NOT FOUND;
        RETURN QUERY
        SELECT qname, r.activated_count, r.rescheduled_count, r.killed_count
        FROM fetchq.mnt_run(qname, max_docs) AS r;
    END LOOP;
END $$;

-- As in schema 6, but the jobs made due now are claimed SKIP LOCKED, like
-- mnt_job_pick does: a job row another transaction holds (running maintenance,
-- a queue being dropped or truncated) is left alone instead of waited for
-- while this holds the rows it already updated.
CREATE OR REPLACE FUNCTION fetchq.mnt(lock_duration interval DEFAULT '5 minutes', OUT processed integer, OUT packed integer)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    UPDATE fetchq.jobs AS j SET next_iteration = now()
    FROM (SELECT l.id FROM fetchq.jobs AS l
          WHERE l.queue <> '*' AND l.next_iteration > now()
          FOR UPDATE SKIP LOCKED) AS due
    WHERE j.id = due.id;
    SELECT * INTO r FROM fetchq.mnt_job_run(lock_duration, 1000000);
    processed := r.processed;
    packed := fetchq.metric_log_pack();
END $$;
