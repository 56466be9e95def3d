-- fetchq schema 21: worker registrations, so that a crashed process's leases
-- are released in seconds instead of when each lease runs out.
--
-- A runtime registers when it starts (fetchq.worker_register) and gets an
-- owner: 64 random bits. Every lease its picks make carries the owner in the
-- first 8 bytes of the lease token (fetchq.lease_token), so no column and no
-- extra write per document is needed to know whose a lease is. The runtime
-- renews its registration (fetchq.worker_heartbeat) several times per
-- `rescue_after`, and removes it when it stops (fetchq.worker_deregister).
--
-- Maintenance (fetchq.mnt_rescue_workers, run by the runtime's leader every
-- round) treats a registration not renewed for longer than its rescue_after
-- as a dead process: every active document whose token carries that owner
-- goes through the orphan rescue at once (retried and due now, or dead past
-- max attempts, logged and counted as orphans are), and the registration is
-- deleted. A process that finds its registration gone
-- (worker_heartbeat returns false) knows its leases were released.
--
-- Why this is safe with a process that is alive but cut off: the runtime
-- cancels its running handlers once it has not renewed its registration for
-- half of rescue_after (measured on its own clock from before the renewal it
-- sent), and picks nothing until it renews again. The database measures from
-- when it received that renewal, which is later, and waits the whole
-- rescue_after. A PostgreSQL restart shorter than a third of rescue_after
-- cancels nothing.
--
-- Leases made without an owner (fetchq.doc_pick with four arguments, a
-- client's own picks) carry a random token and are rescued when they run out,
-- as before. A random token falls in an owner's range with a chance of 2^-64.

CREATE TABLE fetchq.workers (
    owner         bigint PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    rescue_after  interval NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    seen_at       timestamptz NOT NULL DEFAULT now()
);

-- A new lease token: the owner's 8 bytes, then 8 random bytes (a random
-- token when `owner` is NULL).
CREATE FUNCTION fetchq.lease_token(owner bigint) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT CASE WHEN owner IS NULL THEN gen_random_uuid()
                ELSE (lpad(to_hex(owner), 16, '0') || right(translate(gen_random_uuid()::text, '-', ''), 16))::uuid
           END
$$;

-- The owner part of a lease token (the first 8 bytes, as lease_token wrote them).
CREATE FUNCTION fetchq.lease_owner(token uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ('x' || translate(left(token::text, 18), '-', ''))::bit(64)::bigint
$$;

-- Registers a worker process; returns its owner. rescue_after: how long the
-- registration may go unrenewed before its leases are released (more than 0,
-- at most a day).
CREATE FUNCTION fetchq.worker_register(host text, pid integer, rescue_after interval, OUT owner bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.arg_check(rescue_after > interval '0' AND rescue_after <= interval '1 day',
        format('rescue_after must be more than 0 and at most 1 day, got %s', coalesce(rescue_after::text, 'NULL')));
    PERFORM fetchq.arg_check(host IS NOT NULL AND length(host) <= 255,
        'host must be given, at most 255 characters');
    LOOP
        owner := fetchq.lease_owner(gen_random_uuid());
        INSERT INTO fetchq.workers AS w (owner, host, pid, rescue_after)
        VALUES (owner, host, coalesce(pid, 0), rescue_after)
        ON CONFLICT DO NOTHING;
        EXIT WHEN FOUND;
    END LOOP;
END $$;

-- Renews a registration: false when it is gone (maintenance released its
-- leases, or it was never there).
CREATE FUNCTION fetchq.worker_heartbeat(owner bigint) RETURNS boolean
LANGUAGE sql AS $$
    WITH renewed AS (
        UPDATE fetchq.workers AS w SET seen_at = now() WHERE w.owner = $1 RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM renewed)
$$;

-- Removes a registration (a clean stop, after the leases were given back).
CREATE FUNCTION fetchq.worker_deregister(owner bigint) RETURNS boolean
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM fetchq.workers AS w WHERE w.owner = $1 RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone)
$$;

-- The registered workers, oldest first; `lost` when past its rescue_after.
CREATE FUNCTION fetchq.worker_list()
RETURNS TABLE (owner bigint, host text, pid integer, rescue_after interval,
               registered_at timestamptz, seen_at timestamptz, lost boolean)
LANGUAGE sql STABLE AS $$
    SELECT w.owner, w.host, w.pid, w.rescue_after, w.registered_at, w.seen_at,
           w.seen_at < now() - w.rescue_after
    FROM fetchq.workers AS w ORDER BY w.registered_at, w.owner
$$;

-- Releases the leases of every worker whose registration is past its
-- rescue_after, in every queue, as the orphan rescue does (retried and due
-- now, or dead past max attempts; logged with ref_id fetchq:orphan and
-- counted as orphans), and deletes those registrations. Exactly those
-- documents, none of another owner; a document locked by a transaction in
-- progress is skipped (not waited for), and its owner's registration is
-- kept for the next pass. A queue dropped meanwhile is skipped. Returns how
-- many workers were removed and documents released.
CREATE FUNCTION fetchq.mnt_rescue_workers(OUT workers integer, OUT released integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    dead bigint[];
    q record;
    n_dead integer;
    n_retried integer;
    left_over boolean := false;
    still boolean;
BEGIN
    released := 0;
    workers := 0;
    SELECT array_agg(w.owner) INTO dead
    FROM (SELECT w.owner FROM fetchq.workers AS w
          WHERE w.seen_at < now() - w.rescue_after
          ORDER BY w.seen_at LIMIT 100 FOR UPDATE SKIP LOCKED) AS w;
    IF dead IS NULL THEN
        RETURN;
    END IF;
    FOR q IN SELECT t.name, t.max_attempts FROM fetchq.queues AS t ORDER BY t.name LOOP
        BEGIN
            EXECUTE format($q$
                WITH owned AS (
                    SELECT d.subject FROM %1$s AS d
                    WHERE d.status = 2 AND fetchq.lease_owner(d.lease_token) = ANY ($1)
                    FOR UPDATE SKIP LOCKED
                ), moved AS (
                    UPDATE %1$s AS d
                    SET status = CASE WHEN d.attempts >= $2 THEN -1 ELSE 1 END,
                        lease_token = NULL,
                        iterations = d.iterations + (CASE WHEN d.attempts >= $2 THEN 1 ELSE 0 END),
                        last_iteration = CASE WHEN d.attempts >= $2 THEN now() ELSE d.last_iteration END,
                        next_iteration = CASE WHEN d.attempts >= $2 THEN d.next_iteration ELSE now() END
                    FROM owned WHERE d.subject = owned.subject
                    RETURNING d.subject, d.attempts, d.status, d.lease_token AS gone
                ), logged AS (
                    INSERT INTO %2$s (subject, message, details, ref_id)
                    SELECT m.subject,
                           CASE WHEN m.status = -1
                                THEN 'orphan: its worker stopped renewing its registration, max attempts reached, document is dead'
                                ELSE 'orphan: its worker stopped renewing its registration, document will be retried' END,
                           jsonb_build_object('attempts', m.attempts, 'max_attempts', $2),
                           'fetchq:orphan'
                    FROM moved AS m
                    RETURNING 1
                )
                SELECT (count(*) FILTER (WHERE m.status = -1))::integer,
                       (count(*) FILTER (WHERE m.status = 1))::integer,
                       EXISTS (SELECT 1 FROM %1$s AS d
                               WHERE d.status = 2 AND fetchq.lease_owner(d.lease_token) = ANY ($1)
                                 AND d.subject NOT IN (SELECT o.subject FROM owned AS o))
                FROM moved AS m$q$, fetchq.queue_table(q.name, 'docs'), fetchq.queue_table(q.name, 'logs'))
            INTO n_dead, n_retried, still
            USING dead, q.max_attempts;
        EXCEPTION WHEN undefined_table THEN
            -- the queue was dropped meanwhile: nothing of it to release
            CONTINUE;
        END;
        left_over := left_over OR still;
        IF n_dead + n_retried > 0 THEN
            released := released + n_dead + n_retried;
            PERFORM fetchq.metric_write(q.name, ARRAY['orp', 'err', 'act', 'kll', 'pnd'],
                ARRAY[n_dead + n_retried, n_dead + n_retried, -(n_dead + n_retried),
                      n_dead, n_retried]::bigint[]);
        END IF;
    END LOOP;
    IF NOT left_over THEN
        DELETE FROM fetchq.workers AS w WHERE w.owner = ANY (dead);
        workers := cardinality(dead);
    END IF;
END $$;

-- doc_pick with a lease owner: as the four-argument form (schema 17), and the
-- lease token carries `lease_owner` (fetchq.lease_token; NULL: a random token).
CREATE FUNCTION fetchq.doc_pick(queue text, pick_version integer, pick_limit integer, lease_duration interval,
                                 lease_owner bigint)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    tbl text := fetchq.queue_table(queue, 'docs');
    token uuid := fetchq.lease_token(lease_owner);
    slots integer[];
    -- the pick's own time, not its transaction's start: a pick inside an
    -- old transaction must not stamp its slot in the past
    picked_at timestamptz := clock_timestamp();
    allowed integer := pick_limit;
    n bigint;
    total bigint := 0;
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
            WHERE d.status = 1 AND d.version = $1 AND d.next_iteration <= now() %2$s
            ORDER BY d.priority DESC, d.next_iteration, d.attempts
            LIMIT $2 FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE %1$s AS d
            SET status = 2, attempts = d.attempts + 1, next_iteration = now() + $3, lease_token = $4
            FROM picked WHERE d.subject = picked.subject
            RETURNING d.subject, d.payload, d.version, d.priority, d.attempts, d.iterations,
                      d.created_at, d.last_iteration, d.next_iteration, NULL::timestamptz, d.lease_token
        )
        SELECT * FROM leased ORDER BY 4 DESC$q$, tbl,
        -- a literal condition, so a keyed queue's plan uses its index of
        -- documents without a key
        CASE WHEN q.key_concurrency IS NULL THEN '' ELSE 'AND d.key IS NULL' END)
    USING pick_version, allowed, lease_duration, token;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := n;
    IF q.key_concurrency IS NOT NULL AND total < allowed THEN
        RETURN QUERY SELECT * FROM fetchq.doc_pick_keyed(queue, tbl, q.key_concurrency, pick_version,
                                                         (allowed - total)::integer, lease_duration, token);
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END IF;
    IF total > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['pkd', 'act', 'pnd'], ARRAY[total, total, -total]);
        IF slots IS NOT NULL THEN
            UPDATE fetchq.rate_slots AS s SET used_at = picked_at
            WHERE s.queue = queue AND s.slot = ANY (slots[1:total]);
        END IF;
    END IF;
END $$;
-- The four-argument form: a random token, as before.
CREATE OR REPLACE FUNCTION fetchq.doc_pick(queue text, pick_version integer, pick_limit integer, lease_duration interval)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE sql AS $$
    SELECT * FROM fetchq.doc_pick($1, $2, $3, $4, NULL::bigint)
$$;
