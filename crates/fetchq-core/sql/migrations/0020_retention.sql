-- fetchq schema 20: retention of completed documents, a queue setting.
--
-- A completed document (status 3) used to stay forever, so its subject was
-- never admitted again by a later push: right for a crawler, wasteful for an
-- append-style queue (a mailer: every subject is new). The queue's
-- completed_retention says what happens to completed documents:
--
--   NULL (the default)   kept, as before: a later push of the subject is ignored;
--   '0'                  deleted at once: the completion deletes the row
--                        instead of updating it (as a delete-based queue does);
--   an interval > 0      deleted by maintenance once completed longer ago than
--                        that (last_iteration older than now() - interval), in
--                        batches of the maintenance limit (the `mnt` job's
--                        "limit", 500 by default), one batch per pass.
--
-- One interval column rather than a mode and an interval: "delete after 0"
-- and "delete at once" mean the same thing, and NULL for "no retention" is
-- how an absent limit reads elsewhere (rate_limit, key_concurrency); adding a
-- nullable column without a default rewrites nothing, and every existing
-- queue keeps its documents.
--
-- Counters stay equal to real counts: a document deleted at completion counts
-- as processed (prc) and leaves act, cnt and v<version>; one deleted by
-- maintenance leaves cpl, cnt and v<version>. Neither is a drop (drp stays
-- the count of documents dropped by a worker or an operator).
--
-- Maintenance finds old completed documents through a partial index
-- <queue>__docs_completed_idx (last_iteration) WHERE status = 3, built when a
-- retention is set (writes to the queue wait while it is built) and dropped
-- when it goes back to keep, so a queue that keeps its documents pays nothing.
-- A queue deleting at once never puts a row in it; maintenance uses it there
-- to delete the documents completed before the setting changed.

ALTER TABLE fetchq.queues
    ADD COLUMN completed_retention interval,
    ADD CONSTRAINT queues_completed_retention_check CHECK (completed_retention >= interval '0');

-- Raises FQ004 unless `retention` is NULL or an interval none of whose parts
-- is negative ('1 day -2 hours' compares above zero, but how far back it
-- reaches depends on the calendar) and at most 100 years (now() minus a
-- much longer one is out of the range of timestamps, which would fail every
-- maintenance pass of the queue).
CREATE FUNCTION fetchq.retention_check(retention interval) RETURNS interval
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF retention IS NOT NULL AND NOT (
           date_part('year', retention) >= 0 AND date_part('month', retention) >= 0
           AND date_part('day', retention) >= 0 AND retention - date_trunc('day', retention) >= interval '0') THEN
        RAISE EXCEPTION 'completed retention must not be negative, got %', retention
            USING ERRCODE = 'FQ004',
                  HINT = 'NULL keeps completed documents, 0 deletes them at completion, a positive interval deletes them that long after';
    END IF;
    IF retention > interval '100 years' THEN
        RAISE EXCEPTION 'completed retention must be at most 100 years, got %', retention
            USING ERRCODE = 'FQ004', HINT = 'NULL keeps completed documents forever';
    END IF;
    RETURN retention;
END $$;

-- What happens to the queue's completed documents: NULL keeps them (the
-- default), '0' deletes them at completion, a positive interval deletes them
-- that long after their completion (maintenance, in batches). FQ004 for a
-- negative interval, FQ002 for an unknown queue. Setting a retention builds
-- the index maintenance reads (once; writes to the queue wait meanwhile);
-- going back to keep drops it.
CREATE FUNCTION fetchq.queue_set_completed_retention(queue text, retention interval, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    docs text := queue || '__docs';
BEGIN
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.retention_check(retention);
    -- the queue row first (the lock its UPDATE below takes anyway): a
    -- queue_drop under way finishes before (then FQ002), and one started now
    -- waits for the index
    PERFORM 1 FROM fetchq.queues AS t WHERE t.name = queue FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM fetchq.queue_get(queue);
    END IF;
    IF retention IS NULL THEN
        EXECUTE format('DROP INDEX IF EXISTS %I.%I', 'fetchq_data', docs || '_completed_idx');
    ELSE
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (last_iteration) WHERE status = 3',
            docs || '_completed_idx', 'fetchq_data', docs);
    END IF;
    UPDATE fetchq.queues AS t SET completed_retention = retention WHERE t.name = queue;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- As in schema 4; a queue deleting completed documents at once deletes the
-- row instead (same lease fence, same affected_rows).
CREATE OR REPLACE FUNCTION fetchq.doc_complete(queue text, subject text, payload jsonb DEFAULT NULL,
                                               lease_token uuid DEFAULT NULL, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    gone_version integer;
BEGIN
    PERFORM fetchq.payload_check(q, payload);
    IF q.completed_retention = interval '0' THEN
        EXECUTE format($q$
            DELETE FROM %s WHERE subject = $1 AND status = 2 AND ($2::uuid IS NULL OR lease_token = $2)
            RETURNING version$q$, fetchq.queue_table(queue, 'docs'))
        INTO gone_version
        USING subject, lease_token;
        GET DIAGNOSTICS affected_rows = ROW_COUNT;
        IF affected_rows > 0 THEN
            PERFORM fetchq.metric_write(queue, ARRAY['prc', 'act', 'cnt', 'v' || gone_version],
                                        ARRAY[1, -1, -1, -1]::bigint[]);
        END IF;
        RETURN;
    END IF;
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

-- As in schema 7; a queue deleting completed documents at once deletes the
-- rows instead. Returns the subjects completed (deleted or not).
CREATE OR REPLACE FUNCTION fetchq.doc_complete_many(queue text, subjects text[], lease_tokens uuid[], payloads jsonb[])
RETURNS TABLE (subject varchar)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    done varchar[];
    n bigint;
    versions text[];
    deltas bigint[];
BEGIN
    PERFORM fetchq.arg_check(cardinality(subjects) = cardinality(lease_tokens)
        AND cardinality(subjects) = cardinality(payloads), 'subjects, lease_tokens and payloads must have the same length');
    PERFORM fetchq.payload_check(q, p) FROM unnest(payloads) AS p;
    IF q.completed_retention = interval '0' THEN
        EXECUTE format($q$
            WITH input AS (
                SELECT u.subject, u.token FROM unnest($1::text[], $2::uuid[]) AS u(subject, token)
            ), held AS (
                SELECT d.subject FROM %1$s AS d JOIN input AS i ON i.subject = d.subject
                WHERE d.status = 2 AND d.lease_token = i.token
                ORDER BY d.subject FOR UPDATE OF d
            ), gone AS (
                DELETE FROM %1$s AS d USING held WHERE d.subject = held.subject
                RETURNING d.subject, d.version
            ), per_version AS (
                SELECT g.version, count(*) AS n FROM gone AS g GROUP BY g.version
            )
            SELECT (SELECT coalesce(array_agg(g.subject), '{}') FROM gone AS g),
                   coalesce(sum(p.n), 0)::bigint,
                   coalesce(array_agg('v' || p.version), '{}'),
                   coalesce(array_agg(-p.n), '{}')
            FROM per_version AS p$q$, fetchq.queue_table(queue, 'docs'))
        INTO done, n, versions, deltas
        USING subjects, lease_tokens;
        IF n > 0 THEN
            PERFORM fetchq.metric_write(queue, ARRAY['prc', 'act', 'cnt'] || versions, ARRAY[n, -n, -n] || deltas);
        END IF;
        RETURN QUERY SELECT unnest(done);
        RETURN;
    END IF;
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

-- Deletes up to `max_docs` completed documents of a queue with a retention
-- (completed_retention not NULL) that were completed longer ago than it,
-- oldest first; returns how many. Rows another transaction holds are skipped
-- (SKIP LOCKED), so it is safe to run from many processes at once, and one
-- call is one bounded statement: a big backlog goes over several calls.
-- A queue that keeps its documents (NULL) returns 0 without reading them.
CREATE FUNCTION fetchq.mnt_drop_completed(queue text, max_docs integer DEFAULT 500, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues;
    versions text[];
    deltas bigint[];
BEGIN
    PERFORM fetchq.arg_check(max_docs >= 1, 'limit must be at least 1');
    PERFORM fetchq.queue_name_check(queue);
    -- held to the end: a queue_drop or queue_truncate under way finishes
    -- first (then FQ002), one started now waits for this batch
    SELECT * INTO q FROM fetchq.queues AS t WHERE t.name = queue FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM fetchq.queue_get(queue);
    END IF;
    affected_rows := 0;
    -- keep; or a value written by hand past what queue_set_completed_retention
    -- accepts, which now() - retention could not compute
    IF q.completed_retention IS NULL OR q.completed_retention > interval '100 years' THEN
        RETURN;
    END IF;
    EXECUTE format($q$
        WITH old AS (
            SELECT d.subject FROM %1$s AS d
            WHERE d.status = 3 AND d.last_iteration < now() - $2
            ORDER BY d.last_iteration LIMIT $1 FOR UPDATE SKIP LOCKED
        ), gone AS (
            -- by primary key: a join with the locked rows was planned as a
            -- hash join over every completed document of the index
            DELETE FROM %1$s AS d
            WHERE d.subject = ANY (ARRAY(SELECT o.subject FROM old AS o)) AND d.status = 3
            RETURNING d.version
        ), per_version AS (
            SELECT g.version, count(*) AS n FROM gone AS g GROUP BY g.version
        )
        SELECT coalesce(sum(p.n), 0)::integer, coalesce(array_agg('v' || p.version), '{}'),
               coalesce(array_agg(-p.n), '{}')
        FROM per_version AS p$q$, fetchq.queue_table(queue, 'docs'))
    INTO affected_rows, versions, deltas
    USING max_docs, q.completed_retention;
    IF affected_rows > 0 THEN
        PERFORM fetchq.metric_write(queue, ARRAY['cpl', 'cnt'] || versions,
                                    ARRAY[-affected_rows, -affected_rows]::bigint[] || deltas);
    END IF;
END $$;

-- As in schema 10, and a pass also deletes up to `max_docs` completed
-- documents past the queue's retention (mnt_drop_completed).
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
    PERFORM fetchq.mnt_drop_completed(queue, max_docs);
END $$;
