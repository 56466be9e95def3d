-- fetchq schema 4: picking documents under a lease, and resolving them.
--
-- A pick moves pending documents to active (2): attempts + 1, next_iteration =
-- lease expiry, and a fresh lease_token. Every resolution acts only on an active
-- document and, when given a token, only if it still holds that lease: a worker
-- whose lease expired and whose document was picked again gets 0 and changes
-- nothing (fencing).

-- Delay before a rejected document is retried: delay * 2^(attempts-1), capped at
-- max_delay, times (1 +/- jitter * r) with r in [-1, 1].
CREATE FUNCTION fetchq.retry_backoff(attempts integer, delay interval, max_delay interval,
                                     jitter double precision, r double precision) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT least($3, $2 * power(2, least(greatest($1, 1) - 1, 30))) * (1 + $4 * $5)
$$;

-- Leases up to `pick_limit` due documents of `pick_version` for `lease_duration`.
-- Order: priority DESC, next_iteration ASC, attempts ASC. Planned documents
-- whose time has come are promoted first, so no maintenance pass is needed.
-- Concurrent pickers never receive the same document (FOR UPDATE SKIP LOCKED).
-- A paused queue returns nothing.
CREATE FUNCTION fetchq.doc_pick(queue text, pick_version integer, pick_limit integer, lease_duration interval)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    tbl text := fetchq.queue_table(queue, 'docs');
    token uuid := gen_random_uuid();
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
    USING pick_version, pick_limit, lease_duration, token;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['pkd', 'act', 'pnd'], ARRAY[n, n, -n]);
    END IF;
END $$;

-- Short forms of doc_pick: version 0, 1 document, 5 minute lease.
CREATE FUNCTION fetchq.doc_pick(queue text)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE sql AS $$ SELECT * FROM fetchq.doc_pick($1, 0, 1, interval '5 minutes') $$;

CREATE FUNCTION fetchq.doc_pick(queue text, pick_limit integer)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE sql AS $$ SELECT * FROM fetchq.doc_pick($1, 0, $2, interval '5 minutes') $$;

CREATE FUNCTION fetchq.doc_pick(queue text, lease_duration text)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE sql AS $$ SELECT * FROM fetchq.doc_pick($1, 0, 1, $2::interval) $$;

-- Runs the active document again at `next_iteration` (pending if due, else
-- planned), optionally with a new payload. attempts reset, iterations + 1.
CREATE FUNCTION fetchq.doc_reschedule(queue text, subject text, next_iteration timestamptz,
                                      payload jsonb DEFAULT NULL, lease_token uuid DEFAULT NULL,
                                      OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    st integer := CASE WHEN next_iteration <= now() THEN 1 ELSE 0 END;
BEGIN
    PERFORM fetchq.arg_check(next_iteration IS NOT NULL, 'next_iteration must not be NULL');
    PERFORM fetchq.payload_check(q, payload);
    EXECUTE format($q$
        UPDATE %s SET status = $3, next_iteration = $4, payload = coalesce($5, payload),
               attempts = 0, iterations = iterations + 1, last_iteration = now(), lease_token = NULL
        WHERE subject = $1 AND status = 2 AND ($2::uuid IS NULL OR lease_token = $2)$q$,
        fetchq.queue_table(queue, 'docs'))
    USING subject, lease_token, st, next_iteration, payload;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'res', 'act', 'pnd', 'pln'],
                                    ARRAY[1, 1, -1, st, 1 - st]::bigint[]);
    END IF;
END $$;

-- Moves the active document to another version (a migration handler's result),
-- optionally with a new payload, due at `next_iteration` (default now).
CREATE FUNCTION fetchq.doc_migrate(queue text, subject text, to_version integer,
                                   payload jsonb DEFAULT NULL, next_iteration timestamptz DEFAULT NULL,
                                   lease_token uuid DEFAULT NULL, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    at timestamptz := coalesce(next_iteration, now());
    st integer := CASE WHEN coalesce(next_iteration, now()) <= now() THEN 1 ELSE 0 END;
    from_version integer;
BEGIN
    PERFORM fetchq.arg_check(to_version >= 0, format('version must be 0 or more, got %s', coalesce(to_version::text, 'NULL')));
    PERFORM fetchq.payload_check(q, payload);
    EXECUTE format($q$
        UPDATE %1$s AS d SET version = $3, status = $4, next_iteration = $5,
               payload = coalesce($6, d.payload), attempts = 0, iterations = d.iterations + 1,
               last_iteration = now(), lease_token = NULL
        FROM (SELECT o.subject, o.version FROM %1$s AS o WHERE o.subject = $1 FOR UPDATE) AS old
        WHERE d.subject = old.subject AND d.status = 2 AND ($2::uuid IS NULL OR d.lease_token = $2)
        RETURNING old.version$q$, fetchq.queue_table(queue, 'docs'))
    INTO from_version
    USING subject, lease_token, to_version, st, at, payload;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue,
            ARRAY['prc', 'res', 'act', 'pnd', 'pln', 'v' || from_version, 'v' || to_version],
            ARRAY[1, 1, -1, st, 1 - st, -1, 1]::bigint[]);
    END IF;
END $$;

-- Records a failed attempt: the message goes to the queue's log; the document
-- is retried after the queue's backoff, or is dead (-1) once attempts reached
-- max_attempts.
CREATE FUNCTION fetchq.doc_reject(queue text, subject text, message text, details jsonb DEFAULT NULL,
                                  ref_id text DEFAULT NULL, lease_token uuid DEFAULT NULL,
                                  OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    st integer;
BEGIN
    PERFORM fetchq.arg_check(message IS NOT NULL, 'message must not be NULL');
    EXECUTE format($q$
        UPDATE %s AS d SET
            status = CASE WHEN d.attempts >= $3 THEN -1
                          WHEN now() + fetchq.retry_backoff(d.attempts, $4, $5, $6, $7) <= now() THEN 1
                          ELSE 0 END,
            next_iteration = CASE WHEN d.attempts >= $3 THEN d.next_iteration
                                  ELSE now() + fetchq.retry_backoff(d.attempts, $4, $5, $6, $7) END,
            iterations = d.iterations + 1, last_iteration = now(), lease_token = NULL
        WHERE d.subject = $1 AND d.status = 2 AND ($2::uuid IS NULL OR d.lease_token = $2)
        RETURNING d.status$q$, fetchq.queue_table(queue, 'docs'))
    INTO st
    USING subject, lease_token, q.max_attempts, q.retry_delay, q.retry_delay_max, q.retry_jitter,
          random() * 2 - 1;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM fetchq.log_error(queue, subject, message, details, ref_id);
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'err', 'rej', 'act', 'kll', 'pnd', 'pln'],
            ARRAY[1, 1, 1, -1, (st = -1)::integer, (st = 1)::integer, (st = 0)::integer]::bigint[]);
    END IF;
END $$;

-- Marks the active document completed (3), optionally storing a final payload.
-- It keeps its subject, so pushing the same subject again is ignored.
CREATE FUNCTION fetchq.doc_complete(queue text, subject text, payload jsonb DEFAULT NULL,
                                    lease_token uuid DEFAULT NULL, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
BEGIN
    PERFORM fetchq.payload_check(q, payload);
    EXECUTE format($q$
        UPDATE %s SET status = 3, payload = coalesce($3, payload), attempts = 0,
               iterations = iterations + 1, last_iteration = now(),
               next_iteration = '2970-01-01 00:00:00+00', lease_token = NULL
        WHERE subject = $1 AND status = 2 AND ($2::uuid IS NULL OR lease_token = $2)$q$,
        fetchq.queue_table(queue, 'docs'))
    USING subject, lease_token, payload;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'cpl', 'act'], ARRAY[1, 1, -1]::bigint[]);
    END IF;
END $$;

-- Marks the active document dead (-1): never processed again, and its subject
-- is never re-admitted until it is dropped.
CREATE FUNCTION fetchq.doc_kill(queue text, subject text, payload jsonb DEFAULT NULL,
                                lease_token uuid DEFAULT NULL, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
BEGIN
    PERFORM fetchq.payload_check(q, payload);
    EXECUTE format($q$
        UPDATE %s SET status = -1, payload = coalesce($3, payload), attempts = 0,
               iterations = iterations + 1, last_iteration = now(), lease_token = NULL
        WHERE subject = $1 AND status = 2 AND ($2::uuid IS NULL OR lease_token = $2)$q$,
        fetchq.queue_table(queue, 'docs'))
    USING subject, lease_token, payload;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'kll', 'act'], ARRAY[1, 1, -1]::bigint[]);
    END IF;
END $$;

-- Deletes the active document; its subject can then be pushed again.
CREATE FUNCTION fetchq.doc_drop(queue text, subject text, lease_token uuid DEFAULT NULL,
                                OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    dropped_version integer;
BEGIN
    PERFORM fetchq.queue_get(queue);
    EXECUTE format($q$
        DELETE FROM %s WHERE subject = $1 AND status = 2 AND ($2::uuid IS NULL OR lease_token = $2)
        RETURNING version$q$, fetchq.queue_table(queue, 'docs'))
    INTO dropped_version
    USING subject, lease_token;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['prc', 'drp', 'act', 'cnt', 'v' || dropped_version],
                                    ARRAY[1, 1, -1, -1, -1]::bigint[]);
    END IF;
END $$;

-- Heartbeat: moves the lease expiry to now() + duration while the token still
-- holds the lease. Returns 0 when the lease was lost.
CREATE FUNCTION fetchq.doc_extend_lease(queue text, subject text, lease_duration interval, lease_token uuid,
                                        OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(lease_duration > interval '0', 'lease duration must be positive');
    PERFORM fetchq.arg_check(lease_token IS NOT NULL, 'lease token must not be NULL');
    EXECUTE format($q$
        UPDATE %s SET next_iteration = now() + $3
        WHERE subject = $1 AND status = 2 AND lease_token = $2$q$, fetchq.queue_table(queue, 'docs'))
    USING subject, lease_token, lease_duration;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Reads one document (any status) without changing it; no row when absent.
CREATE FUNCTION fetchq.doc_get(queue text, doc_subject text)
RETURNS TABLE (subject varchar, version integer, priority integer, status integer, attempts integer,
               iterations bigint, next_iteration timestamptz, created_at timestamptz,
               last_iteration timestamptz, payload jsonb)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.version, d.priority, d.status, d.attempts, d.iterations,
               d.next_iteration, d.created_at, d.last_iteration, d.payload
        FROM %s AS d WHERE d.subject = $1$q$, fetchq.queue_table(queue, 'docs'))
    USING doc_subject;
END $$;
