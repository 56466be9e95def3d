-- fetchq schema 19: a keyed pick goes round every key, appended documents
-- may carry a key, and reads show a document's key.
--
-- The keyed walk (schema 17) started each pick at a random md5 text, so keys
-- sorting outside hex (a crawler's host names: "host…" sorts after every
-- hex digit) were always walked from the smallest one, and open keys behind
-- 1,000 full ones were never reached. Now each connection resumes the walk
-- after the last key its previous walk of the queue visited (a session
-- setting, fetchq.key_after_<queue>; a random point on its first walk), so
-- successive picks go round every key: with f full keys in front, an open
-- key is reached within ceil(f / 1000) + 1 picks of one connection. The
-- setting is a hint only: a stale or foreign value (a pooled session used
-- by another client) just moves the starting point.

CREATE OR REPLACE FUNCTION fetchq.doc_pick_keyed(queue text, tbl text, cap integer, pick_version integer,
                                      wanted integer, lease_duration interval, token uuid)
RETURNS TABLE (subject varchar, payload jsonb, version integer, priority integer, attempts integer,
               iterations bigint, created_at timestamptz, last_iteration timestamptz,
               next_iteration timestamptz, lock_upgrade timestamptz, lease_token uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    cursor_name text := 'fetchq.key_after_' || queue;
    -- where this connection's last walk of the queue stopped; a random
    -- point on its first walk
    start text := coalesce(nullif(current_setting(cursor_name, true), ''), md5(random()::text));
    last_key text;
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
            last_key := k;
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
    -- the next walk on this connection starts after the last key visited,
    -- so successive picks go round every key, however many are full
    IF last_key IS NOT NULL THEN
        PERFORM set_config(cursor_name, last_key, false);
    END IF;
END $$;

-- doc_append with a key: as the four-argument form, and the document gets
-- `key` (NULL: none; 1 to 255 characters, FQ004 otherwise).
CREATE FUNCTION fetchq.doc_append(queue text, payload jsonb, version integer, priority integer, key text,
                                  OUT subject varchar)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
BEGIN
    PERFORM fetchq.arg_check(version >= 0, format('version must be 0 or more, got %s', coalesce(version::text, 'NULL')));
    PERFORM fetchq.arg_check(priority IS NOT NULL, 'priority must not be NULL');
    PERFORM fetchq.arg_check(key IS NULL OR length(key) BETWEEN 1 AND 255,
        format('a key is 1 to 255 characters, got %s', length(key)));
    PERFORM fetchq.payload_check(q, payload);
    subject := gen_random_uuid()::text;
    EXECUTE format('INSERT INTO %s (subject, version, priority, status, next_iteration, payload, key)
                    VALUES ($1, $2, $3, 1, now(), $4, $5)', fetchq.queue_table(queue, 'docs'))
    USING subject, version, priority, coalesce(payload, '{}'::jsonb), key;
    PERFORM fetchq.metric_docs_entered(queue, version, 1, 0);
END $$;

-- The reads of schema 4, 12 and 14 with the document's key as a last column
-- (a new result shape: dropped and created again).
DROP FUNCTION fetchq.doc_get(text, text);
DROP FUNCTION fetchq.doc_list(text, integer, integer, text, text, integer);
DROP FUNCTION fetchq.doc_list_rare(text, integer, integer, text, text, integer, text, text);

-- Reads one document (any status) without changing it; no row when absent.
CREATE FUNCTION fetchq.doc_get(queue text, doc_subject text)
RETURNS TABLE (subject varchar, version integer, priority integer, status integer, attempts integer,
               iterations bigint, next_iteration timestamptz, created_at timestamptz,
               last_iteration timestamptz, payload jsonb, key varchar)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.version, d.priority, d.status, d.attempts, d.iterations,
               d.next_iteration, d.created_at, d.last_iteration, d.payload, d.key
        FROM %s AS d WHERE d.subject = $1$q$, fetchq.queue_table(queue, 'docs'))
    USING doc_subject;
END $$;

-- A page of documents whose status is rare: see schema 14.
CREATE FUNCTION fetchq.doc_list_rare(queue text, list_status integer, list_version integer,
                                     subject_prefix text, after_subject text, lim integer, lo text, hi text)
RETURNS TABLE (subject varchar, version integer, priority integer, status integer, attempts integer,
               iterations bigint, next_iteration timestamptz, created_at timestamptz,
               last_iteration timestamptz, payload jsonb, key varchar)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_sort = on
AS $$
#variable_conflict use_variable
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.version, d.priority, d.status, d.attempts, d.iterations,
               d.next_iteration, d.created_at, d.last_iteration, d.payload, d.key
        FROM %s AS d WHERE %s
        ORDER BY d.subject || '' LIMIT $7$q$,
        fetchq.queue_table(queue, 'docs'),
        fetchq.doc_filter_sql(list_status, list_version, subject_prefix, after_subject, lo IS NOT NULL))
    USING list_status, list_version, subject_prefix, after_subject, lo, hi, lim;
END $$;

-- doc_list as in schema 14, with the key.
CREATE FUNCTION fetchq.doc_list(queue text, list_status integer DEFAULT NULL, list_version integer DEFAULT NULL,
                                           subject_prefix text DEFAULT NULL, after_subject text DEFAULT NULL,
                                           lim integer DEFAULT 100)
RETURNS TABLE (subject varchar, version integer, priority integer, status integer, attempts integer,
               iterations bigint, next_iteration timestamptz, created_at timestamptz,
               last_iteration timestamptz, payload jsonb, key varchar)
LANGUAGE plpgsql STABLE
SET enable_sort = off
AS $$
#variable_conflict use_variable
DECLARE
    b record;
    matching bigint;
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(lim BETWEEN 1 AND 1000, format('limit must be 1 to 1000, got %s', lim));
    SELECT f.lo, f.hi, f.impossible INTO b
    FROM fetchq.doc_filter_check(list_status, list_version, subject_prefix) AS f;
    IF b.impossible THEN
        RETURN;
    END IF;
    IF list_status IN (-1, 0, 1, 2) THEN
        SELECT coalesce(sum(r.current_value), 0) INTO matching
        FROM fetchq.metric_read(queue, ARRAY[CASE list_status WHEN -1 THEN 'kll' WHEN 0 THEN 'pln'
                                                              WHEN 1 THEN 'pnd' ELSE 'act' END]) AS r;
        IF matching <= fetchq.doc_list_rare_limit() THEN
            RETURN QUERY SELECT * FROM fetchq.doc_list_rare(queue, list_status, list_version, subject_prefix,
                                                            after_subject, lim, b.lo, b.hi);
            RETURN;
        END IF;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.version, d.priority, d.status, d.attempts, d.iterations,
               d.next_iteration, d.created_at, d.last_iteration, d.payload, d.key
        FROM %s AS d WHERE %s
        ORDER BY d.subject LIMIT $7$q$,
        fetchq.queue_table(queue, 'docs'),
        fetchq.doc_filter_sql(list_status, list_version, subject_prefix, after_subject, b.lo IS NOT NULL))
    USING list_status, list_version, subject_prefix, after_subject, b.lo, b.hi, lim;
END $$;
