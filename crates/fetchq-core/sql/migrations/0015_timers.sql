-- fetchq schema 15: timers (how long a piece of code takes), and counters
-- written in batches.
--
-- A timer is stored as counters next to the core metrics, so it shares their
-- write path (an append to fetchq.metrics_writes, no hot row per call), their
-- packing, their exact read (packed value plus pending writes), their
-- snapshots and their removal with the queue. A timer <name> of a queue is:
--   ~t/<name>/us    the sum of the measured times, in microseconds
--   ~t/<name>/b<i>  how many times fell in bucket i (1 to 16): the first i
--                   whose upper bound timer_buckets()[i] (ms) is >= the
--                   time; bucket 16 is +Inf. The count is their sum.
-- The prefix `~t/` is reserved: timer names cannot produce other names, and
-- metric_log_increment / metric_log_set refuse it from this schema on.
-- A timer name is 1 to 64 characters of A-Z, a-z, 0-9, _ . and -, starting
-- with a letter or _ (FQ004 otherwise).

-- The upper bounds of the timer buckets, in milliseconds (a 16th bucket, +Inf,
-- takes the rest).
CREATE FUNCTION fetchq.timer_buckets() RETURNS double precision[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]::double precision[]
$$;

-- Raises FQ004 unless `name` is a valid timer name; returns it.
CREATE FUNCTION fetchq.timer_name_check(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$' THEN
        RAISE EXCEPTION 'invalid timer name %', quote_nullable(left(name, 80))
            USING ERRCODE = 'FQ004',
                  HINT = 'a timer name is 1 to 64 characters of A-Z, a-z, 0-9, _ . and -, starting with a letter or _';
    END IF;
    RETURN name;
END $$;

-- Raises FQ004 for a user metric name in the timers' reserved namespace.
CREATE FUNCTION fetchq.metric_name_check(metric text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM fetchq.arg_check(length(metric) BETWEEN 1 AND 100, 'a metric name is 1 to 100 characters');
    PERFORM fetchq.arg_check(left(metric, 3) <> '~t/', 'metric names starting with ~t/ are reserved for timers');
    RETURN metric;
END $$;

-- As in schema 5, refusing the timers' reserved names.
CREATE OR REPLACE FUNCTION fetchq.metric_log_increment(queue text, metric text, increment bigint, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.metric_name_check(metric);
    PERFORM fetchq.arg_check(increment IS NOT NULL, 'increment must not be NULL');
    IF increment = 0 THEN
        affected_rows := 0;
        RETURN;
    END IF;
    INSERT INTO fetchq.metrics_writes (queue, metric, increment) VALUES (queue, metric, increment);
    affected_rows := 1;
END $$;

-- As in schema 5, refusing the timers' reserved names.
CREATE OR REPLACE FUNCTION fetchq.metric_log_set(queue text, metric text, value bigint, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.metric_name_check(metric);
    PERFORM fetchq.arg_check(value IS NOT NULL, 'value must not be NULL');
    INSERT INTO fetchq.metrics_writes (queue, metric, reset) VALUES (queue, metric, value);
    affected_rows := 1;
END $$;

-- Counter increments in one call: queues[i]'s metric names[i] goes up by
-- increments[i] (the same checks as metric_log_increment; one bad element
-- refuses the whole call, FQ001 or FQ004). Increments of the same counter are
-- summed into one write. Returns the number of writes.
CREATE FUNCTION fetchq.metric_log_increment(queues text[], metrics text[], increments bigint[],
                                            OUT affected_rows integer)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fetchq.arg_check(queues IS NOT NULL AND metrics IS NOT NULL AND increments IS NOT NULL
                             AND cardinality(queues) = cardinality(metrics)
                             AND cardinality(queues) = cardinality(increments),
                             'queues, metrics and increments must be arrays of the same length');
    PERFORM fetchq.queue_name_check(u.q), fetchq.metric_name_check(u.m),
            fetchq.arg_check(u.i IS NOT NULL, 'increment must not be NULL')
    FROM unnest(queues, metrics, increments) AS u(q, m, i);
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT u.q, u.m, sum(u.i) FROM unnest(queues, metrics, increments) AS u(q, m, i)
    GROUP BY u.q, u.m HAVING sum(u.i) <> 0;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Records measured times, in milliseconds: queues[i]'s timer names[i] took
-- ms[i]. Each time adds to the timer's sum and to one bucket; times of the
-- same timer and bucket are folded into one write, so a batch of N times of
-- one timer costs a few writes, not N. FQ001 for a bad queue name, FQ004 for
-- a bad timer name or a time that is NULL, negative, NaN, infinite or above
-- 10^9 ms; one bad element refuses the whole call. Returns the number of writes.
CREATE FUNCTION fetchq.metric_time(queues text[], names text[], ms double precision[], OUT affected_rows integer)
LANGUAGE plpgsql AS $$
DECLARE
    bounds double precision[] := fetchq.timer_buckets();
BEGIN
    PERFORM fetchq.arg_check(queues IS NOT NULL AND names IS NOT NULL AND ms IS NOT NULL
                             AND cardinality(queues) = cardinality(names)
                             AND cardinality(queues) = cardinality(ms),
                             'queues, names and ms must be arrays of the same length');
    PERFORM fetchq.queue_name_check(u.q), fetchq.timer_name_check(u.n),
            fetchq.arg_check(u.t >= 0 AND u.t <= 1e9 AND u.t <> 'NaN',
                             'a time is 0 to 10^9 milliseconds')
    FROM unnest(queues, names, ms) AS u(q, n, t);
    WITH obs AS (
        SELECT u.q, u.n, u.t,
               coalesce((SELECT min(b.i) FROM unnest(bounds) WITH ORDINALITY AS b(le, i) WHERE u.t <= b.le),
                        cardinality(bounds) + 1) AS bucket
        FROM unnest(queues, names, ms) AS u(q, n, t)
    ), sums AS (
        SELECT o.q, '~t/' || o.n || '/us' AS metric, round(sum(o.t) * 1000)::bigint AS inc
        FROM obs AS o GROUP BY o.q, o.n
    ), counts AS (
        SELECT o.q, '~t/' || o.n || '/b' || o.bucket AS metric, count(*)::bigint AS inc
        FROM obs AS o GROUP BY o.q, o.n, o.bucket
    )
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT s.q, s.metric, s.inc FROM sums AS s
    UNION ALL
    SELECT c.q, c.metric, c.inc FROM counts AS c;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- One measured time: queue's timer `name` took `ms` milliseconds.
CREATE FUNCTION fetchq.metric_time(queue text, name text, ms double precision, OUT affected_rows integer)
LANGUAGE sql AS $$ SELECT fetchq.metric_time(ARRAY[$1], ARRAY[$2], ARRAY[$3]) $$;

-- Timers, exact at read (packed value plus pending writes, as metric_get):
-- for `only_queue` (every queue's when NULL), only the timer `only_name` when
-- given. count, sum_ms, and the histogram: le_ms (the upper bounds, the last
-- one Infinity) and cumulative (how many times were <= each bound, the last
-- one = count). A timer never written is absent. O(counters + writes not
-- packed yet), never O(documents).
CREATE FUNCTION fetchq.timer_list(only_queue text DEFAULT NULL, only_name text DEFAULT NULL)
RETURNS TABLE (queue varchar, timer varchar, count bigint, sum_ms double precision,
               le_ms double precision[], cumulative bigint[])
LANGUAGE plpgsql STABLE
SET jit = off
AS $$
#variable_conflict use_variable
DECLARE
    bounds double precision[] := fetchq.timer_buckets() || 'Infinity'::double precision;
    names text[];
BEGIN
    IF only_queue IS NOT NULL THEN
        PERFORM fetchq.queue_name_check(only_queue);
    END IF;
    IF only_name IS NOT NULL THEN
        PERFORM fetchq.timer_name_check(only_name);
        SELECT array_agg('~t/' || only_name || '/b' || i) || ('~t/' || only_name || '/us') INTO names
        FROM generate_series(1, cardinality(bounds)) AS i;
    END IF;
    RETURN QUERY
    WITH parts AS (
        SELECT r.queue, substring(r.metric FROM '^~t/(.*)/[^/]*$') AS timer,
               substring(r.metric FROM '/([^/]*)$') AS part, r.current_value AS value
        FROM fetchq.metric_read(only_queue, names) AS r
        WHERE left(r.metric, 3) = '~t/'
    ), timers AS (
        SELECT p.queue, p.timer, coalesce(sum(p.value) FILTER (WHERE p.part = 'us'), 0) AS sum_us
        FROM parts AS p WHERE p.timer IS NOT NULL GROUP BY p.queue, p.timer
    )
    SELECT t.queue::varchar, t.timer::varchar, h.cum[cardinality(h.cum)], (t.sum_us / 1000.0)::double precision,
           bounds, h.cum
    FROM timers AS t, LATERAL (
        SELECT array_agg(c.running ORDER BY c.i) AS cum FROM (
            SELECT b.i, sum(coalesce(p.value, 0)) OVER (ORDER BY b.i)::bigint AS running
            FROM generate_series(1, cardinality(bounds)) AS b(i)
            LEFT JOIN parts AS p ON p.queue = t.queue AND p.timer = t.timer AND p.part = 'b' || b.i
        ) AS c
    ) AS h
    ORDER BY t.queue, t.timer;
END $$;

-- One timer of a queue (count 0, sum 0 and empty buckets when never written).
CREATE FUNCTION fetchq.timer_get(queue text, name text,
                                 OUT count bigint, OUT sum_ms double precision,
                                 OUT le_ms double precision[], OUT cumulative bigint[])
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    SELECT t.count, t.sum_ms, t.le_ms, t.cumulative INTO count, sum_ms, le_ms, cumulative
    FROM fetchq.timer_list(queue, name) AS t;
    IF NOT FOUND THEN
        count := 0;
        sum_ms := 0;
        le_ms := fetchq.timer_buckets() || 'Infinity'::double precision;
        SELECT array_agg(0::bigint) INTO cumulative FROM unnest(le_ms);
    END IF;
END $$;
