-- fetchq schema 7: what the worker runtime needs. Wake-up notifications,
-- the next planned time, and batched heartbeats, completions, reschedules and
-- releases. Batches lock their rows in subject order, so two batches of one
-- process (say a heartbeat and a completion) can never deadlock.

-- Every operation that makes documents pending (push, append, reschedule or
-- reject into the past, orphan rescue, promotion, release) already writes a
-- positive 'pnd' delta here; it now also sends NOTIFY fetchq_pending with the
-- queue name. The notification is a wake-up hint for idle workers, never the
-- source of truth: workers still poll.
CREATE OR REPLACE FUNCTION fetchq.metric_write(queue text, metrics text[], increments bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1, u.m, u.i FROM unnest($2, $3) AS u(m, i) WHERE u.i <> 0;
    IF 'pnd' = ANY ($2) AND EXISTS (SELECT 1 FROM unnest($2, $3) AS u(m, i) WHERE u.m = 'pnd' AND u.i > 0) THEN
        PERFORM pg_notify('fetchq_pending', $1);
    END IF;
END $$;

-- The earliest planned time of the queue's planned documents (NULL if none):
-- how long an idle worker may sleep.
CREATE FUNCTION fetchq.queue_next_due(queue text, OUT next_iteration timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    EXECUTE format('SELECT d.next_iteration FROM %s AS d WHERE d.status = 0 ORDER BY d.next_iteration LIMIT 1',
                   fetchq.queue_table(queue, 'docs'))
    INTO next_iteration;
END $$;

-- Heartbeat for many documents: extends the leases still held (subject and
-- token match) to now() + duration; returns the subjects extended. A subject
-- not returned has lost its lease.
CREATE FUNCTION fetchq.doc_extend_lease_many(queue text, subjects text[], lease_tokens uuid[], lease_duration interval)
RETURNS TABLE (subject varchar)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(lease_duration > interval '0', 'lease duration must be positive');
    PERFORM fetchq.arg_check(cardinality(subjects) = cardinality(lease_tokens), 'subjects and lease_tokens must have the same length');
    RETURN QUERY EXECUTE format($q$
        WITH held AS (
            SELECT d.subject FROM %1$s AS d
            JOIN unnest($1::text[], $2::uuid[]) AS u(subject, token) ON u.subject = d.subject
            WHERE d.status = 2 AND d.lease_token = u.token
            ORDER BY d.subject FOR UPDATE
        )
        UPDATE %1$s AS d SET next_iteration = now() + $3 FROM held
        WHERE d.subject = held.subject
        RETURNING d.subject$q$, fetchq.queue_table(queue, 'docs'))
    USING subjects, lease_tokens, lease_duration;
END $$;

-- Completes many leased documents in one statement (payload NULL keeps the
-- stored one); returns the subjects completed. The others had lost their lease.
CREATE FUNCTION fetchq.doc_complete_many(queue text, subjects text[], lease_tokens uuid[], payloads jsonb[])
RETURNS TABLE (subject varchar)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    n bigint;
BEGIN
    PERFORM fetchq.arg_check(cardinality(subjects) = cardinality(lease_tokens)
        AND cardinality(subjects) = cardinality(payloads), 'subjects, lease_tokens and payloads must have the same length');
    PERFORM fetchq.payload_check(q, p) FROM unnest(payloads) AS p;
    RETURN QUERY EXECUTE format($q$
        WITH input AS (
            SELECT u.subject, u.token, u.payload FROM unnest($1::text[], $2::uuid[], $3::jsonb[]) AS u(subject, token, payload)
        ), held AS (
            SELECT d.subject, i.payload FROM %1$s AS d JOIN input AS i ON i.subject = d.subject
            WHERE d.status = 2 AND d.lease_token = i.token
            ORDER BY d.subject FOR UPDATE OF d
        )
        UPDATE %1$s AS d SET status = 3, payload = coalesce(held.payload, d.payload), attempts = 0,
               iterations = d.iterations + 1, last_iteration = now(),
               next_iteration = '2970-01-01 00:00:00+00', lease_token = NULL
        FROM held WHERE d.subject = held.subject
        RETURNING d.subject$q$, fetchq.queue_table(queue, 'docs'))
    USING subjects, lease_tokens, payloads;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'cpl', 'act'], ARRAY[n, n, -n]);
    END IF;
END $$;

-- Reschedules many leased documents: each at coalesce(at, now() + delay),
-- pending if due, planned otherwise; returns the subjects rescheduled.
CREATE FUNCTION fetchq.doc_reschedule_many(queue text, subjects text[], lease_tokens uuid[],
                                           next_iterations timestamptz[], delays interval[], payloads jsonb[])
RETURNS TABLE (subject varchar)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    done varchar[];
    pending bigint;
    total bigint;
BEGIN
    PERFORM fetchq.arg_check(cardinality(subjects) = cardinality(lease_tokens)
        AND cardinality(subjects) = cardinality(next_iterations) AND cardinality(subjects) = cardinality(delays)
        AND cardinality(subjects) = cardinality(payloads), 'all arrays must have the same length');
    PERFORM fetchq.payload_check(q, p) FROM unnest(payloads) AS p;
    EXECUTE format($q$
        WITH input AS (
            SELECT u.subject, u.token, coalesce(u.at, now() + coalesce(u.delay, interval '0')) AS at, u.payload
            FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::interval[], $5::jsonb[])
                 AS u(subject, token, at, delay, payload)
        ), held AS (
            SELECT d.subject, i.at, i.payload FROM %1$s AS d JOIN input AS i ON i.subject = d.subject
            WHERE d.status = 2 AND d.lease_token = i.token
            ORDER BY d.subject FOR UPDATE OF d
        ), moved AS (
            UPDATE %1$s AS d SET status = CASE WHEN held.at <= now() THEN 1 ELSE 0 END,
                   next_iteration = held.at, payload = coalesce(held.payload, d.payload),
                   attempts = 0, iterations = d.iterations + 1, last_iteration = now(), lease_token = NULL
            FROM held WHERE d.subject = held.subject
            RETURNING d.subject, d.status
        )
        SELECT coalesce(array_agg(m.subject), '{}'), count(*), count(*) FILTER (WHERE m.status = 1)
        FROM moved AS m$q$, fetchq.queue_table(queue, 'docs'))
    INTO done, total, pending
    USING subjects, lease_tokens, next_iterations, delays, payloads;
    IF total > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'res', 'act', 'pnd', 'pln'],
                                    ARRAY[total, total, -total, pending, total - pending]);
    END IF;
    RETURN QUERY SELECT unnest(done);
END $$;

-- Gives leased documents back untouched (graceful shutdown): pending again at
-- once, and the pick that leased them does not count as an attempt. Returns
-- the subjects released.
CREATE FUNCTION fetchq.doc_release(queue text, subjects text[], lease_tokens uuid[])
RETURNS TABLE (subject varchar)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    n bigint;
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(cardinality(subjects) = cardinality(lease_tokens), 'subjects and lease_tokens must have the same length');
    RETURN QUERY EXECUTE format($q$
        WITH held AS (
            SELECT d.subject FROM %1$s AS d
            JOIN unnest($1::text[], $2::uuid[]) AS u(subject, token) ON u.subject = d.subject
            WHERE d.status = 2 AND d.lease_token = u.token
            ORDER BY d.subject FOR UPDATE
        )
        UPDATE %1$s AS d SET status = 1, next_iteration = now(), attempts = greatest(d.attempts - 1, 0),
               lease_token = NULL
        FROM held WHERE d.subject = held.subject
        RETURNING d.subject$q$, fetchq.queue_table(queue, 'docs'))
    USING subjects, lease_tokens;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['act', 'pnd'], ARRAY[-n, n]);
    END IF;
END $$;
