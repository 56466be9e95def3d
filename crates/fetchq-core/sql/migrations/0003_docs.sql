-- fetchq schema 3: adding documents (push, push_many, append, upsert).
--
-- A document pushed with next_iteration <= now() is pending (1), otherwise
-- planned (0). Counters written: ent, cnt, v<version>, pnd|pln.

-- Metric deltas for `n` documents of one version entering a queue.
CREATE FUNCTION fetchq.metric_docs_entered(queue text, version integer, pending bigint, planned bigint) RETURNS void
LANGUAGE sql AS $$
    SELECT fetchq.metric_write($1, ARRAY['ent', 'cnt', 'v' || $2, 'pnd', 'pln'],
                               ARRAY[$3 + $4, $3 + $4, $3 + $4, $3, $4])
$$;

-- Pushes one document. A duplicate subject returns 0 and changes nothing.
CREATE FUNCTION fetchq.doc_push(queue text, subject text, version integer, priority integer,
                                next_iteration timestamptz, payload jsonb, OUT queued_docs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    at timestamptz := coalesce(next_iteration, now());
    st integer := CASE WHEN coalesce(next_iteration, now()) <= now() THEN 1 ELSE 0 END;
BEGIN
    PERFORM fetchq.subject_check(subject);
    PERFORM fetchq.arg_check(version >= 0, format('version must be 0 or more, got %s', coalesce(version::text, 'NULL')));
    PERFORM fetchq.arg_check(priority IS NOT NULL, 'priority must not be NULL');
    PERFORM fetchq.payload_check(q, payload);
    EXECUTE format('INSERT INTO %s (subject, version, priority, status, next_iteration, payload)
                    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject) DO NOTHING',
                   fetchq.queue_table(queue, 'docs'))
    USING subject, version, priority, st, at, coalesce(payload, '{}'::jsonb);
    GET DIAGNOSTICS queued_docs = ROW_COUNT;
    IF queued_docs > 0 THEN
        PERFORM fetchq.metric_docs_entered(queue, version, st, 1 - st);
    END IF;
END $$;

-- Short forms of doc_push: version 0, priority 0, due now, empty payload.
CREATE FUNCTION fetchq.doc_push(queue text, subject text, OUT queued_docs integer)
LANGUAGE sql AS $$ SELECT fetchq.doc_push($1, $2, 0, 0, now(), '{}'::jsonb) $$;

CREATE FUNCTION fetchq.doc_push(queue text, subject text, payload jsonb, OUT queued_docs integer)
LANGUAGE sql AS $$ SELECT fetchq.doc_push($1, $2, 0, 0, now(), $3) $$;

CREATE FUNCTION fetchq.doc_push(queue text, subject text, payload jsonb, next_iteration timestamptz, OUT queued_docs integer)
LANGUAGE sql AS $$ SELECT fetchq.doc_push($1, $2, 0, 0, $4, $3) $$;

-- Pushes many documents from a JSON array of
-- {"subject", "version"?, "priority"?, "next_iteration"?, "payload"?}.
-- Duplicates (in the queue or within the array) are skipped; returns how many
-- were inserted. The whole batch is validated before anything is written.
CREATE FUNCTION fetchq.doc_push_many(queue text, docs jsonb, OUT queued_docs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
    bad record;
    versions integer[];
    pending bigint[];
    planned bigint[];
BEGIN
    PERFORM fetchq.arg_check(jsonb_typeof(docs) = 'array', 'docs must be a JSON array of objects');
    SELECT e.n, e.doc INTO bad
    FROM jsonb_array_elements(docs) WITH ORDINALITY AS e(doc, n)
    WHERE jsonb_typeof(e.doc) <> 'object'
       OR jsonb_typeof(e.doc->'subject') IS DISTINCT FROM 'string'
       OR length(e.doc->>'subject') NOT BETWEEN 1 AND 255
       OR (e.doc ? 'version' AND jsonb_typeof(e.doc->'version') <> 'null'
           AND (jsonb_typeof(e.doc->'version') <> 'number' OR (e.doc->>'version')::numeric < 0))
       OR pg_column_size(e.doc->'payload') > q.max_payload_size
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'invalid document at position % of the batch: %', bad.n, left(bad.doc::text, 200)
            USING ERRCODE = 'FQ004',
                  HINT = 'each document needs a "subject" string of 1 to 255 characters, a version of 0 or more and a payload within the queue''s max_payload_size';
    END IF;

    EXECUTE format($q$
        WITH input AS (
            SELECT DISTINCT ON (d.subject) d.subject,
                   coalesce(d.version, 0) AS version, coalesce(d.priority, 0) AS priority,
                   coalesce(d.next_iteration, now()) AS next_iteration,
                   coalesce(d.payload, '{}'::jsonb) AS payload
            FROM ROWS FROM (jsonb_to_recordset($1)
                 AS (subject text, version integer, priority integer, next_iteration timestamptz, payload jsonb))
                 WITH ORDINALITY AS d(subject, version, priority, next_iteration, payload, n)
            ORDER BY d.subject, d.n
        ), inserted AS (
            INSERT INTO %s (subject, version, priority, status, next_iteration, payload)
            SELECT i.subject, i.version, i.priority,
                   CASE WHEN i.next_iteration <= now() THEN 1 ELSE 0 END, i.next_iteration, i.payload
            FROM input AS i
            ON CONFLICT (subject) DO NOTHING
            RETURNING version, status
        ), per_version AS (
            SELECT r.version, count(*) FILTER (WHERE r.status = 1) AS pnd,
                   count(*) FILTER (WHERE r.status = 0) AS pln
            FROM inserted AS r GROUP BY r.version
        )
        SELECT coalesce(sum(p.pnd + p.pln), 0)::integer,
               coalesce(array_agg(p.version), '{}'), coalesce(array_agg(p.pnd), '{}'),
               coalesce(array_agg(p.pln), '{}')
        FROM per_version AS p$q$, fetchq.queue_table(queue, 'docs'))
    INTO queued_docs, versions, pending, planned USING docs;
    FOR i IN 1 .. coalesce(array_length(versions, 1), 0) LOOP
        PERFORM fetchq.metric_docs_entered(queue, versions[i], pending[i], planned[i]);
    END LOOP;
END $$;

-- Appends a document under a generated unique subject (a UUID); returns the subject.
CREATE FUNCTION fetchq.doc_append(queue text, payload jsonb, version integer, priority integer, OUT subject varchar)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues := fetchq.queue_get(queue);
BEGIN
    PERFORM fetchq.arg_check(version >= 0, format('version must be 0 or more, got %s', coalesce(version::text, 'NULL')));
    PERFORM fetchq.arg_check(priority IS NOT NULL, 'priority must not be NULL');
    PERFORM fetchq.payload_check(q, payload);
    subject := gen_random_uuid()::text;
    EXECUTE format('INSERT INTO %s (subject, version, priority, status, next_iteration, payload)
                    VALUES ($1, $2, $3, 1, now(), $4)', fetchq.queue_table(queue, 'docs'))
    USING subject, version, priority, coalesce(payload, '{}'::jsonb);
    PERFORM fetchq.metric_docs_entered(queue, version, 1, 0);
END $$;

CREATE FUNCTION fetchq.doc_append(queue text, payload jsonb, OUT subject varchar)
LANGUAGE sql AS $$ SELECT fetchq.doc_append($1, $2, 0, 0) $$;

-- Pushes the document, or when the subject exists and is not active, updates its
-- priority, payload and next_iteration (planned/pending follows the new time;
-- completed and dead documents keep their status). Version is never changed.
CREATE FUNCTION fetchq.doc_upsert(queue text, subject text, version integer, priority integer,
                                  next_iteration timestamptz, payload jsonb,
                                  OUT queued_docs integer, OUT updated_docs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    tbl text := fetchq.queue_table(queue, 'docs');
    at timestamptz := coalesce(next_iteration, now());
    old_status integer;
    new_status integer;
BEGIN
    queued_docs := fetchq.doc_push(queue, subject, version, priority, next_iteration, payload);
    updated_docs := 0;
    IF queued_docs > 0 THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT status FROM %s WHERE subject = $1 FOR UPDATE', tbl) INTO old_status USING subject;
    IF old_status IS NULL OR old_status = 2 THEN
        RETURN;
    END IF;
    new_status := CASE WHEN old_status IN (0, 1) THEN (CASE WHEN at <= now() THEN 1 ELSE 0 END) ELSE old_status END;
    EXECUTE format('UPDATE %s SET priority = $2, next_iteration = $3, payload = $4, status = $5 WHERE subject = $1', tbl)
    USING subject, priority, at, coalesce(payload, '{}'::jsonb), new_status;
    GET DIAGNOSTICS updated_docs = ROW_COUNT;
    IF new_status <> old_status THEN
        PERFORM fetchq.metric_write(queue, ARRAY['pnd', 'pln'],
            ARRAY[CASE WHEN new_status = 1 THEN 1 ELSE -1 END, CASE WHEN new_status = 0 THEN 1 ELSE -1 END]::bigint[]);
    END IF;
END $$;
