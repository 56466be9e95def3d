-- fetchq schema 16: per-queue rate limits, enforced by every pick of every
-- process together.
--
-- A queue limited to n leases per interval `per` owns n slot rows in
-- fetchq.rate_slots. A pick may lease one document per slot whose last use is
-- at least `per` old (used_at <= now() - per), and stamps the slots it used
-- with its own now(). Each slot is therefore used at most once in any window
-- of `per` (measured in pick times, the now() that also starts the lease), so
-- no window of `per` ever holds more than n leases: a sliding window, exact,
-- with no approximation at its edges.
--
-- Exact under concurrency: slots are taken FOR UPDATE SKIP LOCKED, so two
-- picks never use the same slot. A pick that finds a slot already used by a
-- transaction that committed after its snapshot re-checks the row's newest
-- version (READ COMMITTED's recheck of locked rows) and skips it when it is
-- no longer old enough. Concurrent picks take disjoint slots instead of
-- queueing on one row, and the slots of one queue are never touched by picks
-- of another queue (the rows are keyed by queue), so there is no hot row.
--
-- Slots are configuration of the queue, kept by pg_dump of the extension and
-- removed with the queue.

ALTER TABLE fetchq.queues
    ADD COLUMN rate_limit integer,
    ADD COLUMN rate_per   interval,
    ADD CONSTRAINT queues_rate_limit_check CHECK (
        (rate_limit IS NULL AND rate_per IS NULL)
        OR (rate_limit BETWEEN 1 AND 100000 AND rate_per > interval '0' AND rate_per <= interval '7 days'));

CREATE TABLE fetchq.rate_slots (
    queue   varchar(40) NOT NULL,
    slot    integer NOT NULL,
    -- the pick time of the slot's last lease; the epoch (1970) when never used
    -- (a finite time, so waits can be computed from it)
    used_at timestamptz NOT NULL DEFAULT 'epoch',
    CONSTRAINT rate_slots_pkey PRIMARY KEY (queue, slot)
) WITH (fillfactor = 50);
-- a pick reads the oldest slots of its queue
CREATE INDEX rate_slots_used_idx ON fetchq.rate_slots (queue, used_at);

-- Limits the queue to `rate_limit` leases in any window of `per`, across
-- every worker; NULL removes the limit (`per` is then ignored). rate_limit is
-- 1 to 100,000 and per more than 0 and at most 7 days (FQ004 otherwise). The
-- slots are rebuilt keeping the most recent uses, so changing the limit of a
-- busy queue does not open a burst: a smaller limit keeps its newest slots.
-- Waits for picks of the queue in progress (they hold its slots).
CREATE FUNCTION fetchq.queue_set_rate_limit(queue text, rate_limit integer, per interval,
                                            OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    kept timestamptz[];
BEGIN
    PERFORM fetchq.queue_get(queue);
    IF rate_limit IS NOT NULL THEN
        PERFORM fetchq.arg_check(rate_limit BETWEEN 1 AND 100000,
            format('rate limit must be 1 to 100000 documents, got %s', rate_limit));
        PERFORM fetchq.arg_check(per IS NOT NULL AND per > interval '0' AND per <= interval '7 days',
            format('rate limit interval must be more than 0 and at most 7 days, got %s', coalesce(per::text, 'NULL')));
    END IF;
    -- one setter at a time per queue, then the slots (picks holding them finish first)
    PERFORM 1 FROM fetchq.queues AS t WHERE t.name = queue FOR UPDATE;
    SELECT array_agg(s.used_at ORDER BY s.used_at DESC) INTO kept
    FROM (SELECT r.used_at FROM fetchq.rate_slots AS r WHERE r.queue = queue ORDER BY r.slot FOR UPDATE) AS s;
    DELETE FROM fetchq.rate_slots AS r WHERE r.queue = queue;
    IF rate_limit IS NOT NULL THEN
        INSERT INTO fetchq.rate_slots (queue, slot, used_at)
        SELECT queue, g, coalesce(kept[g], 'epoch')
        FROM generate_series(1, rate_limit) AS g;
    END IF;
    UPDATE fetchq.queues AS t
    SET rate_limit = rate_limit, rate_per = CASE WHEN rate_limit IS NULL THEN NULL ELSE per END
    WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- How long until the queue's next slot opens, on the database's clock: 0 when
-- one is free now, NULL when the queue has no rate limit. Slots held by picks
-- in progress count as free (they will be used with a time close to now).
CREATE FUNCTION fetchq.queue_rate_wait(queue text) RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT greatest(min(s.used_at) + q.rate_per - clock_timestamp(), interval '0')
    FROM fetchq.queues AS q JOIN fetchq.rate_slots AS s ON s.queue = q.name
    WHERE q.name = $1 AND q.rate_limit IS NOT NULL
    GROUP BY q.rate_per
$$;

-- As in schema 4, within the queue's rate limit: at most one document per
-- free slot is leased, and the slots used are stamped with this pick's time.
CREATE OR REPLACE FUNCTION fetchq.doc_pick(queue text, pick_version integer, pick_limit integer, lease_duration interval)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    tbl text := fetchq.queue_table(queue, 'docs');
    token uuid := gen_random_uuid();
    slots integer[];
    -- the pick's own time, not its transaction's start: a pick inside an
    -- old transaction must not stamp its slot in the past
    picked_at timestamptz := clock_timestamp();
    allowed integer := pick_limit;
    n bigint;
BEGIN
    PERFORM fetchq.arg_check(pick_version >= 0, format('version must be 0 or more, got %s', coalesce(pick_version::text, 'NULL')));
    PERFORM fetchq.arg_check(pick_limit >= 1, format('limit must be at least 1, got %s', coalesce(pick_limit::text, 'NULL')));
    PERFORM fetchq.arg_check(lease_duration > interval '0', format('lease duration must be positive, got %s', coalesce(lease_duration::text, 'NULL')));
    IF NOT q.is_active THEN
        RETURN;
    END IF;

    EXECUTE format($q$
        WITH due AS (
            SELECT d.subject FROM %1$s AS d
            WHERE d.status = 0 AND d.next_iteration <= now()
            ORDER BY d.next_iteration LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE %1$s AS d SET status = 1 FROM due WHERE d.subject = due.subject$q$, tbl)
    USING greatest(pick_limit, 100);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['pnd', 'pln'], ARRAY[n, -n]);
    END IF;

    IF q.rate_limit IS NOT NULL THEN
        SELECT array_agg(f.slot ORDER BY f.used_at) INTO slots
        FROM (SELECT s.slot, s.used_at FROM fetchq.rate_slots AS s
              WHERE s.queue = queue AND s.used_at <= picked_at - q.rate_per
              ORDER BY s.used_at LIMIT pick_limit FOR UPDATE SKIP LOCKED) AS f;
        allowed := coalesce(cardinality(slots), 0);
        IF allowed = 0 THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY EXECUTE format($q$
        WITH picked AS (
            SELECT d.subject FROM %1$s AS d
            WHERE d.status = 1 AND d.version = $1 AND d.next_iteration <= now()
            ORDER BY d.priority DESC, d.next_iteration, d.attempts
            LIMIT $2 FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE %1$s AS d
            SET status = 2, attempts = d.attempts + 1, next_iteration = now() + $3, lease_token = $4
            FROM picked WHERE d.subject = picked.subject
            RETURNING d.subject, d.payload, d.version, d.priority, d.attempts, d.iterations,
                      d.created_at, d.last_iteration, d.next_iteration, NULL::timestamptz, d.lease_token
        )
        SELECT * FROM leased ORDER BY 4 DESC$q$, tbl)
    USING pick_version, allowed, lease_duration, token;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['pkd', 'act', 'pnd'], ARRAY[n, n, -n]);
        IF slots IS NOT NULL THEN
            UPDATE fetchq.rate_slots AS s SET used_at = picked_at
            WHERE s.queue = queue AND s.slot = ANY (slots[1:n]);
        END IF;
    END IF;
END $$;

-- As in schema 10, and the queue's rate slots go with it.
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
    DELETE FROM fetchq.rate_slots AS r WHERE r.queue = queue;
    PERFORM pg_notify('fetchq_queue_drop', queue);
END $$;
