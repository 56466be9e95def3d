-- fetchq schema 12: looking inside a queue and an operator's actions on its
-- documents (the REST API and the console call these).
--
-- Listing: doc_list pages through the documents of a queue in subject order
-- (keyset paging on the primary key, never a COUNT), filtered by status,
-- version and a literal subject prefix; log_list pages through the error log,
-- newest first; metric_history reads the snapshots metric_snap wrote.
--
-- Actions without the lease: doc_play, doc_force_kill, doc_force_reschedule,
-- doc_force_drop on one document, and doc_bulk over a filter in batches. They
-- act on a document whatever its status. An active document loses its lease
-- (lease_token cleared), so the worker's own resolution later changes nothing
-- (fencing). Counters move from the document's status before the action to
-- its status after, so they stay exact; these are not resolutions: prc, res,
-- err and the like do not move (a drop counts in drp, as every drop does).

-- Whether the documents' subjects sort by code point (the database collation
-- is C, POSIX or C.UTF-8, in UTF-8): then every subject starting with a prefix
-- lies in one range of the primary key, which doc_list and doc_bulk use to
-- stop early. In other collations the prefix is still matched exactly, by
-- starts_with over the keyset walk, without the range.
CREATE FUNCTION fetchq.subject_sorts_by_code_point() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT current_setting('server_encoding') = 'UTF8'
       AND coalesce((SELECT d.datlocprovider IN ('c', 'b')
                            AND (d.datcollate IN ('C', 'POSIX') OR d.datcollate ~* '^C\.UTF-?8$')
                     FROM pg_database AS d WHERE d.datname = current_database()), false)
$$;

-- The WHERE clause (without the keyword) of a document filter over the
-- documents table aliased `d`, on parameters $1 status, $2 version, $3 prefix,
-- $4 after, $5 lower bound, $6 upper bound; NULL filters are left out, so each
-- statement is planned for the filters it has.
CREATE FUNCTION fetchq.doc_filter_sql(list_status integer, list_version integer, subject_prefix text,
                                      after_subject text, bounded boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(' AND ', 'true',
        CASE WHEN $1 IS NOT NULL THEN 'd.status = $1' END,
        CASE WHEN $2 IS NOT NULL THEN 'd.version = $2' END,
        CASE WHEN $3 IS NOT NULL THEN 'starts_with(d.subject, $3)' END,
        CASE WHEN $4 IS NOT NULL THEN 'd.subject > $4' END,
        CASE WHEN $3 IS NOT NULL AND $5 THEN 'd.subject >= $5 AND d.subject <= $6' END)
$$;

-- Checks the shared arguments of a filter and returns the primary key range of
-- the prefix (lo, hi) when subjects sort by code point, else NULLs. A prefix
-- longer than a subject can be matches nothing (`impossible`).
CREATE FUNCTION fetchq.doc_filter_check(list_status integer, list_version integer, subject_prefix text,
                                        OUT lo text, OUT hi text, OUT impossible boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM fetchq.arg_check(list_status IS NULL OR list_status BETWEEN -1 AND 3,
        format('status must be -1, 0, 1, 2 or 3, got %s', list_status));
    PERFORM fetchq.arg_check(list_version IS NULL OR list_version >= 0,
        format('version must be 0 or more, got %s', list_version));
    impossible := subject_prefix IS NOT NULL AND length(subject_prefix) > 255;
    IF subject_prefix IS NOT NULL AND NOT impossible AND fetchq.subject_sorts_by_code_point() THEN
        lo := subject_prefix;
        -- every subject (at most 255 characters) starting with the prefix sorts
        -- at or below the prefix followed by the highest code point repeated
        hi := subject_prefix || repeat(chr(1114111), 255 - length(subject_prefix));
    END IF;
END $$;

-- A page of a queue's documents in subject order: those matching the filters
-- (NULL = any) with a subject after `after_subject`, at most `lim` (1 to
-- 1000). The prefix is matched literally (no wildcards). Pass the last subject
-- of a page as `after_subject` to get the next page.
CREATE FUNCTION fetchq.doc_list(queue text, list_status integer DEFAULT NULL, list_version integer DEFAULT NULL,
                                subject_prefix text DEFAULT NULL, after_subject text DEFAULT NULL,
                                lim integer DEFAULT 100)
RETURNS TABLE (subject varchar, version integer, priority integer, status integer, attempts integer,
               iterations bigint, next_iteration timestamptz, created_at timestamptz,
               last_iteration timestamptz, payload jsonb)
LANGUAGE plpgsql STABLE
-- walk the primary key in subject order: with stale statistics a filter looks
-- like it matches nothing, and the planner read and sorted the whole table for
-- every page (every batch of a bulk: quadratic over a big queue)
SET enable_sort = off
AS $$
#variable_conflict use_variable
DECLARE
    b record;
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(lim BETWEEN 1 AND 1000, format('limit must be 1 to 1000, got %s', lim));
    SELECT f.lo, f.hi, f.impossible INTO b
    FROM fetchq.doc_filter_check(list_status, list_version, subject_prefix) AS f;
    IF b.impossible THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT d.subject, d.version, d.priority, d.status, d.attempts, d.iterations,
               d.next_iteration, d.created_at, d.last_iteration, d.payload
        FROM %s AS d WHERE %s
        ORDER BY d.subject LIMIT $7$q$,
        fetchq.queue_table(queue, 'docs'),
        fetchq.doc_filter_sql(list_status, list_version, subject_prefix, after_subject, b.lo IS NOT NULL))
    USING list_status, list_version, subject_prefix, after_subject, b.lo, b.hi, lim;
END $$;

-- The engine of the operator's actions. `action` is 'play' (pending, due now,
-- attempts 0), 'kill' (dead), 'reschedule' (planned at `at`, or pending when
-- that is not in the future; attempts 0) or 'drop' (deleted).
-- With `only_subject`: that one document, waiting for a transaction that holds
-- its row. Otherwise: at most `lim` documents matching the filters after
-- `after_subject`, in subject order; rows other transactions hold at that
-- moment are skipped, not waited for. Returns how many changed and the last
-- subject changed (where the next batch starts).
CREATE FUNCTION fetchq.doc_admin(queue text, action text, at timestamptz, only_subject text,
                                 list_status integer, list_version integer, subject_prefix text,
                                 after_subject text, lim integer,
                                 OUT changed integer, OUT last_subject text)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    tbl text;
    lo text;
    hi text;
    impossible boolean;
    target text;
    keys text;
    change text;
    deltas bigint[];
    versions text[];
    version_deltas bigint[];
    woke boolean;
    batch_keys text[];
    sort_setting text;
BEGIN
    changed := 0;
    PERFORM fetchq.arg_check(action IN ('play', 'kill', 'reschedule', 'drop'),
        format('action must be play, kill, reschedule or drop, got %s', quote_nullable(action)));
    PERFORM fetchq.arg_check(action <> 'reschedule' OR at IS NOT NULL, 'next_iteration must not be NULL');
    tbl := fetchq.queue_table(queue, 'docs');
    -- the queue's row (lock order of schema 10): a drop, truncate or counter
    -- repair of the queue under way finishes first; FQ002 if it is gone
    PERFORM 1 FROM fetchq.queues AS t WHERE t.name = queue FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM fetchq.queue_get(queue);
    END IF;
    IF only_subject IS NOT NULL THEN
        target := format('SELECT d.subject, d.status, d.version FROM %s AS d WHERE d.subject = $8 FOR UPDATE', tbl);
    ELSE
        PERFORM fetchq.arg_check(lim BETWEEN 1 AND 10000, format('batch must be 1 to 10000, got %s', lim));
        SELECT f.lo, f.hi, f.impossible INTO lo, hi, impossible
        FROM fetchq.doc_filter_check(list_status, list_version, subject_prefix) AS f;
        IF impossible THEN
            RETURN;
        END IF;
        IF list_status IS NULL AND list_version IS NULL THEN
            target := format('SELECT d.subject, d.status, d.version FROM %s AS d WHERE %s
                              ORDER BY d.subject LIMIT $7 FOR UPDATE SKIP LOCKED',
                tbl, fetchq.doc_filter_sql(list_status, list_version, subject_prefix, after_subject, lo IS NOT NULL));
        ELSE
            -- a status or version filter: lock the batch first, walking the
            -- primary key from after_subject (as doc_list). With stale
            -- statistics such a filter looks like it matches nothing, and the
            -- planner read and sorted the whole table for every batch
            -- (quadratic over a big queue). Only this statement is planned
            -- without sorts; a failure rolls the setting back with the transaction.
            sort_setting := current_setting('enable_sort');
            PERFORM set_config('enable_sort', 'off', true);
            EXECUTE format('SELECT array_agg(t.subject) FROM (SELECT d.subject FROM %s AS d WHERE %s
                                    ORDER BY d.subject LIMIT $7 FOR UPDATE SKIP LOCKED) AS t',
                    tbl, fetchq.doc_filter_sql(list_status, list_version, subject_prefix, after_subject, lo IS NOT NULL))
                INTO batch_keys
                USING list_status, list_version, subject_prefix, after_subject, lo, hi, lim;
            PERFORM set_config('enable_sort', sort_setting, true);
            IF batch_keys IS NULL THEN
                RETURN;
            END IF;
            -- rows this transaction holds now: they cannot change before the update
            target := format('SELECT d.subject, d.status, d.version FROM %s AS d
                              WHERE d.subject = ANY ($11)', tbl);
        END IF;
    END IF;
    -- the change finds its rows by primary key (a join with the locked rows
    -- alone was planned as a hash join over the whole table)
    keys := '(SELECT array_agg(k.subject) FROM target AS k)::text[]';
    IF action = 'drop' THEN
        change := format('DELETE FROM %s AS d USING target AS o
                          WHERE d.subject = o.subject AND d.subject = ANY (%s)
                          RETURNING o.subject, o.status AS old_status, NULL::integer AS new_status, o.version', tbl, keys);
    ELSE
        change := format($q$
            UPDATE %s AS d SET
                status = CASE $9 WHEN 'play' THEN 1 WHEN 'kill' THEN -1
                                 ELSE (CASE WHEN $10 <= now() THEN 1 ELSE 0 END) END,
                next_iteration = CASE $9 WHEN 'play' THEN now() WHEN 'reschedule' THEN $10
                                         ELSE d.next_iteration END,
                attempts = CASE WHEN $9 = 'kill' THEN d.attempts ELSE 0 END,
                lease_token = NULL
            FROM target AS o WHERE d.subject = o.subject AND d.subject = ANY (%s)
            RETURNING o.subject, o.status AS old_status, d.status AS new_status, o.version$q$, tbl, keys);
    END IF;
    -- one statement: lock, change, and the counter deltas per status
    -- (pln, pnd, act, cpl, kll, cnt, drp) and per version (drops only)
    EXECUTE format($q$
        WITH target AS (%s), changed AS (%s)
        SELECT count(*)::integer,
               (SELECT c.subject FROM changed AS c ORDER BY c.subject DESC LIMIT 1)::text,
               ARRAY[count(*) FILTER (WHERE c.new_status = 0) - count(*) FILTER (WHERE c.old_status = 0),
                     count(*) FILTER (WHERE c.new_status = 1) - count(*) FILTER (WHERE c.old_status = 1),
                     count(*) FILTER (WHERE c.new_status = 2) - count(*) FILTER (WHERE c.old_status = 2),
                     count(*) FILTER (WHERE c.new_status = 3) - count(*) FILTER (WHERE c.old_status = 3),
                     count(*) FILTER (WHERE c.new_status = -1) - count(*) FILTER (WHERE c.old_status = -1),
                     -count(*) FILTER (WHERE c.new_status IS NULL),
                     count(*) FILTER (WHERE c.new_status IS NULL)],
               (SELECT coalesce(array_agg('v' || v.version ORDER BY v.version), '{}')
                FROM (SELECT DISTINCT c.version FROM changed AS c WHERE c.new_status IS NULL) AS v),
               (SELECT coalesce(array_agg(-v.n ORDER BY v.version), '{}')
                FROM (SELECT c.version, count(*) AS n FROM changed AS c WHERE c.new_status IS NULL
                      GROUP BY c.version) AS v),
               bool_or(c.new_status IN (0, 1))
        FROM changed AS c$q$, target, change)
    INTO changed, last_subject, deltas, versions, version_deltas, woke
    USING list_status, list_version, subject_prefix, after_subject, lo, hi, lim, only_subject, action, at,
          batch_keys;
    IF changed > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['pln', 'pnd', 'act', 'cpl', 'kll', 'cnt', 'drp'] || versions,
                                    deltas || version_deltas);
    END IF;
    -- a document made pending or planned wakes idle workers at commit, also
    -- when no pending counter went up (a pending one played, a planned one
    -- brought forward)
    IF woke THEN
        PERFORM fetchq.pending_hint(queue);
    END IF;
END $$;

-- Makes a document due now with its attempts reset, whatever its status
-- (pending, next_iteration now). Returns 0 when the subject does not exist.
CREATE FUNCTION fetchq.doc_play(queue text, subject text, OUT affected_rows integer)
LANGUAGE sql AS $$
    SELECT a.changed FROM fetchq.doc_admin($1, 'play', NULL, fetchq.subject_check($2),
                                           NULL, NULL, NULL, NULL, NULL) AS a
$$;

-- Kills a document (dead, its subject kept), whatever its status.
CREATE FUNCTION fetchq.doc_force_kill(queue text, subject text, OUT affected_rows integer)
LANGUAGE sql AS $$
    SELECT a.changed FROM fetchq.doc_admin($1, 'kill', NULL, fetchq.subject_check($2),
                                           NULL, NULL, NULL, NULL, NULL) AS a
$$;

-- Plans a document at `next_iteration` (pending when that is not in the
-- future) with its attempts reset, whatever its status.
CREATE FUNCTION fetchq.doc_force_reschedule(queue text, subject text, next_iteration timestamptz,
                                            OUT affected_rows integer)
LANGUAGE sql AS $$
    SELECT a.changed FROM fetchq.doc_admin($1, 'reschedule', $3, fetchq.subject_check($2),
                                           NULL, NULL, NULL, NULL, NULL) AS a
$$;

-- Deletes a document whatever its status; its subject can be pushed again.
CREATE FUNCTION fetchq.doc_force_drop(queue text, subject text, OUT affected_rows integer)
LANGUAGE sql AS $$
    SELECT a.changed FROM fetchq.doc_admin($1, 'drop', NULL, fetchq.subject_check($2),
                                           NULL, NULL, NULL, NULL, NULL) AS a
$$;

-- One batch of a bulk action ('play', 'kill', 'reschedule' at
-- `next_iteration`, 'drop') over the documents matching the filters (NULL =
-- any) after `after_subject`, at most `lim` (1 to 10000) in subject order, in
-- one statement. Rows another transaction holds are skipped (not waited for,
-- not counted). Returns how many changed and the last subject changed: call
-- again with it as `after_subject` until `changed` < `lim`.
CREATE FUNCTION fetchq.doc_bulk(queue text, list_status integer, list_version integer, subject_prefix text,
                                action text, next_iteration timestamptz DEFAULT NULL,
                                after_subject text DEFAULT NULL, lim integer DEFAULT 1000,
                                OUT changed integer, OUT last_subject text)
LANGUAGE sql AS $$
    SELECT a.changed, a.last_subject
    FROM fetchq.doc_admin($1, $5, $6, NULL, $2, $3, $4, $7, $8) AS a
$$;

-- The error log of a queue, newest first: only `log_subject`'s rows when given,
-- only ids below `before` when given, at most `lim` (1 to 1000).
CREATE FUNCTION fetchq.log_list(queue text, log_subject text DEFAULT NULL, before bigint DEFAULT NULL,
                                lim integer DEFAULT 100)
RETURNS TABLE (id bigint, created_at timestamptz, subject varchar, message text, details jsonb, ref_id text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(lim BETWEEN 1 AND 1000, format('limit must be 1 to 1000, got %s', lim));
    RETURN QUERY EXECUTE format($q$
        SELECT l.id, l.created_at, l.subject, l.message, l.details, l.ref_id
        FROM %s AS l
        WHERE ($1::text IS NULL OR l.subject = $1) AND ($2::bigint IS NULL OR l.id < $2)
        ORDER BY l.id DESC LIMIT $3$q$, fetchq.queue_table(queue, 'logs'))
    USING log_subject, before, lim;
END $$;

-- The metric snapshots of a queue (see metric_snap) taken at or after `since`
-- (NULL: all), oldest first, at most `lim` (1 to 10000).
CREATE FUNCTION fetchq.metric_history(queue text, since timestamptz DEFAULT NULL, lim integer DEFAULT 1000)
RETURNS TABLE (metric varchar, created_at timestamptz, value bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.queue_get(queue);
    PERFORM fetchq.arg_check(lim BETWEEN 1 AND 10000, format('limit must be 1 to 10000, got %s', lim));
    RETURN QUERY EXECUTE format($q$
        SELECT m.metric, m.created_at, m.value
        FROM %s AS m
        WHERE ($1::timestamptz IS NULL OR m.created_at >= $1)
        ORDER BY m.created_at, m.id LIMIT $2$q$, fetchq.queue_table(queue, 'metrics'))
    USING since, lim;
END $$;
