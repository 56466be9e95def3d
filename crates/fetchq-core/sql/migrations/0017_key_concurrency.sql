-- fetchq schema 17: per-key concurrency. A document may carry a key (the
-- host a crawler fetches from, a customer id; NULL = none); a queue with
-- key_concurrency n never has more than n active documents of one key,
-- across every worker.
--
-- How a pick keeps it exact: every pick of such a queue goes through
-- fetchq.doc_pick (the client's per-queue statement hands over to it). For
-- each key it considers, the pick first takes a transaction-level advisory
-- lock of the key (try-lock: a key another pick is working on is skipped, not
-- waited for), then counts the key's active documents in a new statement, so
-- with a snapshot taken after the lock: every lease of that key by an earlier
-- holder of the lock is committed and counted. Resolutions and orphan rescue
-- only lower the count and need no lock; a stale count can only be too high.
-- The count reads an index of active keyed documents, so it costs at most n
-- index entries.
--
-- How a pick skips keys at capacity without reading their documents: it
-- walks the distinct keys of pending documents (a loose index scan, one probe
-- of the key index per key, never the documents behind a key), starting at a
-- random point and wrapping around, so keys late in the order are not starved;
-- for a key with room it takes the key's first documents in pick order. Its
-- cost is O(keys visited), not O(blocked documents): 100,000 due documents on
-- 10 full keys cost 10 probes. At most 1,000 keys are visited per pick, and
-- at most 32 are locked (the advisory locks stay until commit, and the
-- server's lock table is shared: max_locks_per_transaction per connection).
-- A key is locked only when it looks open in a first, unlocked count; a key
-- full then is skipped (it may have freed meanwhile: skipping is safe).
-- Documents without a key are picked first, without a limit.
--
-- The count needs READ COMMITTED (a new snapshot per statement): a keyed pick
-- in a REPEATABLE READ or SERIALIZABLE transaction is refused (FQ004).

ALTER TABLE fetchq.queues
    ADD COLUMN key_concurrency integer,
    ADD CONSTRAINT queues_key_concurrency_check CHECK (key_concurrency BETWEEN 1 AND 10000);

-- every existing queue's documents get the column (no default: no rewrite)
DO $$
DECLARE
    q record;
BEGIN
    FOR q IN SELECT t.name FROM fetchq.queues AS t LOOP
        EXECUTE format('ALTER TABLE %I.%I ADD COLUMN IF NOT EXISTS key varchar(255)',
                       'fetchq_data', q.name || '__docs');
    END LOOP;
END $$;

-- queue_create as in schema 14, and the docs table gets its key column.
ALTER FUNCTION fetchq.queue_create(text) RENAME TO queue_create_tables;

CREATE FUNCTION fetchq.queue_create(queue text, OUT was_created boolean, OUT queue_id integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    SELECT c.was_created, c.queue_id INTO was_created, queue_id FROM fetchq.queue_create_tables(queue) AS c;
    IF was_created THEN
        EXECUTE format('ALTER TABLE %I.%I ADD COLUMN key varchar(255)', 'fetchq_data', queue || '__docs');
    END IF;
END $$;

-- The indexes a keyed pick walks: pending keyed documents in pick order per
-- key, active keyed documents by key, and pending documents without a key in
-- pick order (so they are found without walking past the keyed ones).
CREATE FUNCTION fetchq.queue_create_key_indexes(queue text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    docs text := queue || '__docs';
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (version, key, priority DESC, next_iteration, attempts) WHERE status = 1 AND key IS NOT NULL',
        docs || '_key_pick_idx', 'fetchq_data', docs);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (key) WHERE status = 2 AND key IS NOT NULL',
        docs || '_key_active_idx', 'fetchq_data', docs);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (version, priority DESC, next_iteration, attempts) WHERE status = 1 AND key IS NULL',
        docs || '_nokey_pick_idx', 'fetchq_data', docs);
END $$;

-- At most `n` active documents with the same key, across every worker; NULL
-- removes the cap. n is 1 to 10,000 (FQ004 otherwise). Setting it builds the
-- two key indexes of the queue (once; writes to the queue wait meanwhile).
CREATE FUNCTION fetchq.queue_set_key_concurrency(queue text, n integer, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(n IS NULL OR n BETWEEN 1 AND 10000,
        format('key concurrency must be 1 to 10000, got %s', n));
    IF n IS NOT NULL THEN
        PERFORM fetchq.queue_create_key_indexes(queue);
    END IF;
    UPDATE fetchq.queues AS t SET key_concurrency = n WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Sets the key of a document that is not active (NULL removes it); 0 when it
-- does not exist or is active. A key is 1 to 255 characters (FQ004).
CREATE FUNCTION fetchq.doc_set_key(queue text, subject text, key text, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(key IS NULL OR length(key) BETWEEN 1 AND 255,
        format('a key is 1 to 255 characters, got %s', length(key)));
    EXECUTE format('UPDATE %s SET key = $2 WHERE subject = $1 AND status <> 2', fetchq.queue_table(queue, 'docs'))
    USING subject, key;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- The keyed part of a pick: up to `wanted` documents of `pick_version` from
-- keys below their cap, leased for `lease_duration` with `token`. See the
-- top of this file.
CREATE FUNCTION fetchq.doc_pick_keyed(queue text, tbl text, cap integer, pick_version integer,
                                      wanted integer, lease_duration interval, token uuid)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    start text := md5(random()::text);
    k text;
    active bigint;
    n bigint;
    visited integer := 0;
    locked integer := 0;
    lock_class integer := hashtext('fetchq.key');
    walk text := $w$
        WITH RECURSIVE walk(key) AS (
            (SELECT d.key FROM %1$s AS d
             WHERE d.status = 1 AND d.version = $1 AND d.key IS NOT NULL AND d.key > $2 %2$s
             ORDER BY d.key LIMIT 1)
            UNION ALL
            SELECT (SELECT d.key FROM %1$s AS d
                    WHERE d.status = 1 AND d.version = $1 AND d.key IS NOT NULL AND d.key > w.key %2$s
                    ORDER BY d.key LIMIT 1)
            FROM walk AS w WHERE w.key IS NOT NULL
        )
        SELECT w.key FROM walk AS w WHERE w.key IS NOT NULL$w$;
    pass integer;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a pick of a queue with key concurrency needs READ COMMITTED, not %',
            current_setting('transaction_isolation') USING ERRCODE = 'FQ004';
    END IF;
    -- from a random point to the end, then from the start up to it
    FOR pass IN 1 .. 2 LOOP
        FOR k IN EXECUTE format(walk, tbl, CASE WHEN pass = 2 THEN 'AND d.key <= $3' ELSE '' END)
                 USING pick_version, CASE WHEN pass = 1 THEN start ELSE '' END, start LOOP
            EXIT WHEN wanted <= 0 OR visited >= 1000 OR locked >= 32;
            visited := visited + 1;
            -- a key full in this statement's snapshot is skipped without a
            -- lock (it may have freed since: skipping it is safe), so locks
            -- are taken only for keys that look open
            EXECUTE format('SELECT count(*) FROM %s AS d WHERE d.key = $1 AND d.status = 2', tbl)
            INTO active USING k;
            CONTINUE WHEN active >= cap;
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(lock_class, hashtext(queue || '/' || k));
            locked := locked + 1;
            -- a new statement: its snapshot sees every lease of k committed
            -- before the lock was taken
            EXECUTE format('SELECT count(*) FROM %s AS d WHERE d.key = $1 AND d.status = 2', tbl)
            INTO active USING k;
            CONTINUE WHEN active >= cap;
            RETURN QUERY EXECUTE format($q$
                WITH picked AS (
                    SELECT d.subject FROM %1$s AS d
                    WHERE d.status = 1 AND d.version = $1 AND d.key = $2 AND d.next_iteration <= now()
                    ORDER BY d.priority DESC, d.next_iteration, d.attempts
                    LIMIT $3 FOR UPDATE SKIP LOCKED
                )
                UPDATE %1$s AS d
                SET status = 2, attempts = d.attempts + 1, next_iteration = now() + $4, lease_token = $5
                FROM picked WHERE d.subject = picked.subject
                RETURNING d.subject, d.payload, d.version, d.priority, d.attempts, d.iterations,
                          d.created_at, d.last_iteration, d.next_iteration, NULL::timestamptz, d.lease_token$q$, tbl)
            USING pick_version, k, least(cap - active, wanted), lease_duration, token;
            GET DIAGNOSTICS n = ROW_COUNT;
            wanted := wanted - n;
        END LOOP;
        EXIT WHEN wanted <= 0 OR visited >= 1000 OR locked >= 32;
    END LOOP;
END $$;

-- As in schema 16, and within the queue's key concurrency: documents without
-- a key first, then keys below their cap (fetchq.doc_pick_keyed).
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

-- doc_upsert with a key: as the six-argument form, and the queued or updated
-- document gets `key` (NULL: none), as it gets the other values given.
CREATE FUNCTION fetchq.doc_upsert(queue text, subject text, version integer, priority integer,
                                  next_iteration timestamptz, payload jsonb, key text,
                                  OUT queued_docs integer, OUT updated_docs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.arg_check(key IS NULL OR length(key) BETWEEN 1 AND 255,
        format('a key is 1 to 255 characters, got %s', length(key)));
    SELECT u.queued_docs, u.updated_docs INTO queued_docs, updated_docs
    FROM fetchq.doc_upsert(queue, subject, version, priority, next_iteration, payload) AS u;
    IF queued_docs + updated_docs > 0 THEN
        EXECUTE format('UPDATE %s SET key = $2 WHERE subject = $1 AND key IS DISTINCT FROM $2',
                       fetchq.queue_table(queue, 'docs'))
        USING subject, key;
    END IF;
END $$;
