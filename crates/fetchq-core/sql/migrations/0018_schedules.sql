-- fetchq schema 18: schedules (cron): a document pushed, or made due again,
-- on a calendar.
--
-- A schedule is configuration, like a queue's settings: a name, a cron
-- expression (5 fields, or 6 with seconds first, or an @nickname), the time
-- zone it is read in, and the document it fires: queue, subject, payload,
-- version, priority.
--
-- Cron cannot be evaluated well in SQL, so the work is split:
--   * schedule_set checks what SQL can (the name, the time zone exists in
--     pg_timezone_names, the queue exists, the subject, 5 or 6 fields) and the
--     Rust client checks the expression fully (croner, chrono-tz) before it
--     calls it;
--   * next_tick_at NULL means "not computed yet": the maintenance leader
--     computes the first tick after now() in Rust and stores it with
--     schedule_plan, guarded by `revision` (bumped whenever cron or time_zone
--     change) so a plan computed from an old expression is never stored;
--   * a due schedule (next_tick_at <= now()) is fired by schedule_fire, in one
--     transaction: a conditional UPDATE on (revision, next_tick_at) advances
--     next_tick_at to the first tick after now() and only the caller whose
--     UPDATE matched fires the document. Two leaders (one losing its lock
--     mid-round) or any number of concurrent callers fire each tick once.
--     Ticks missed while nothing ran (next_tick_at long past) fire once, and
--     their number is added to ticks_collapsed.
--
-- What a tick does to the document (like Oban's cron and River's periodic
-- jobs with uniqueness, one document per schedule subject):
--   absent              pushed, due now (schedule payload, version, priority)
--   planned or pending  made due now, payload and priority from the schedule
--   completed or dead   made due now again, attempts 0 (a new run)
--   active              left alone: the tick is skipped (ticks_skipped + 1),
--                       never overlapping a run still going, and the next tick
--                       is planned as usual.
-- The document's version is the schedule's only when the tick pushes it; an
-- existing document keeps its version (as doc_upsert does).
--
-- Dropping a queue drops its schedules (a trigger on fetchq.queues), as it
-- drops the queue's maintenance jobs. A schedule whose queue is missing anyway
-- (inserted by hand) records FQ002 in last_error and fires nothing.

CREATE TABLE fetchq.schedules (
    name            varchar(100) NOT NULL,
    cron            text NOT NULL,
    time_zone       text NOT NULL DEFAULT 'UTC',
    queue           varchar(40) NOT NULL,
    subject         varchar(255) NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}',
    version         integer NOT NULL DEFAULT 0,
    priority        integer NOT NULL DEFAULT 0,
    -- bumped when cron or time_zone change: a plan computed before is refused
    revision        bigint NOT NULL DEFAULT 1,
    -- the next tick (UTC instant); NULL until the leader computed it
    next_tick_at    timestamptz,
    last_tick_at    timestamptz,
    ticks           bigint NOT NULL DEFAULT 0,
    ticks_collapsed bigint NOT NULL DEFAULT 0,
    ticks_skipped   bigint NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_pkey PRIMARY KEY (name)
);
CREATE INDEX schedules_next_tick_idx ON fetchq.schedules (next_tick_at NULLS FIRST);
CREATE INDEX schedules_queue_idx ON fetchq.schedules (queue);

-- Raises FQ004 unless `name` is a valid schedule name; returns it.
CREATE FUNCTION fetchq.schedule_name_check(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$' THEN
        RAISE EXCEPTION 'invalid schedule name %', quote_nullable(left(name, 120))
            USING ERRCODE = 'FQ004',
                  HINT = 'a schedule name is 1 to 100 characters of A-Z, a-z, 0-9, _ . : and -, not starting with . : or -';
    END IF;
    RETURN name;
END $$;

-- Raises FQ004 unless `cron` has the shape of a cron expression (5 fields, 6
-- with seconds, or an @nickname) and `time_zone` is a known time zone name.
-- The full check of the expression is the client's (croner).
CREATE FUNCTION fetchq.schedule_cron_check(cron text, time_zone text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    fields integer;
BEGIN
    PERFORM fetchq.arg_check(cron IS NOT NULL AND length(cron) BETWEEN 1 AND 200,
                             'a cron expression is 1 to 200 characters');
    IF left(btrim(cron), 1) = '@' THEN
        PERFORM fetchq.arg_check(lower(btrim(cron)) IN ('@yearly', '@annually', '@monthly', '@weekly', '@daily',
                                                        '@midnight', '@hourly'),
                                 format('unknown cron nickname %s', quote_literal(btrim(cron))));
    ELSE
        fields := cardinality(regexp_split_to_array(btrim(cron), '\s+'));
        PERFORM fetchq.arg_check(fields IN (5, 6),
            format('a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first), got %s in %s',
                   fields, quote_literal(cron)));
    END IF;
    PERFORM fetchq.arg_check(time_zone IS NOT NULL AND EXISTS (SELECT 1 FROM pg_timezone_names AS z WHERE z.name = time_zone),
                             format('unknown time zone %s', quote_nullable(time_zone)));
END $$;

-- Creates or changes a schedule. A change of cron or time_zone replans it
-- (next_tick_at NULL, revision + 1); any other change keeps the planned tick,
-- so a process that sets the same schedule at every start never loses a tick
-- that is due. FQ004 for a bad name, cron shape, time zone, version or
-- priority, FQ003 for a bad subject, FQ002 when the queue does not exist.
CREATE FUNCTION fetchq.schedule_set(name text, cron text, time_zone text, queue text, subject text,
                                    payload jsonb DEFAULT '{}', version integer DEFAULT 0,
                                    priority integer DEFAULT 0,
                                    OUT was_created boolean, OUT was_replanned boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    q fetchq.queues;
    old fetchq.schedules;
BEGIN
    PERFORM fetchq.schedule_name_check(name);
    PERFORM fetchq.schedule_cron_check(cron, time_zone);
    PERFORM fetchq.queue_name_check(queue);
    PERFORM fetchq.subject_check(subject);
    PERFORM fetchq.arg_check(version >= 0, format('version must be 0 or more, got %s', coalesce(version::text, 'NULL')));
    PERFORM fetchq.arg_check(priority IS NOT NULL, 'priority must not be NULL');
    -- the queue's row, held until commit: a concurrent queue_drop waits, then
    -- its trigger drops this schedule too
    SELECT t.* INTO q FROM fetchq.queues AS t WHERE t.name = queue FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM fetchq.queue_get(queue); -- FQ002
    END IF;
    PERFORM fetchq.payload_check(q, coalesce(payload, '{}'::jsonb));
    SELECT s.* INTO old FROM fetchq.schedules AS s WHERE s.name = name FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO fetchq.schedules AS s (name, cron, time_zone, queue, subject, payload, version, priority)
        VALUES (name, btrim(cron), time_zone, queue, subject, coalesce(payload, '{}'::jsonb), version, priority)
        ON CONFLICT ON CONSTRAINT schedules_pkey DO NOTHING;
        IF FOUND THEN
            was_created := true;
            was_replanned := true;
            RETURN;
        END IF;
        -- created meanwhile by another transaction: change it
        SELECT s.* INTO old FROM fetchq.schedules AS s WHERE s.name = name FOR UPDATE;
    END IF;
    was_created := false;
    was_replanned := old.cron IS DISTINCT FROM btrim(cron) OR old.time_zone IS DISTINCT FROM time_zone;
    UPDATE fetchq.schedules AS s SET
        cron = btrim(cron), time_zone = time_zone, queue = queue, subject = subject,
        payload = coalesce(payload, '{}'::jsonb), version = version, priority = priority,
        revision = s.revision + (CASE WHEN was_replanned THEN 1 ELSE 0 END),
        next_tick_at = CASE WHEN was_replanned THEN NULL ELSE s.next_tick_at END,
        last_error = CASE WHEN was_replanned THEN NULL ELSE s.last_error END,
        updated_at = now()
    WHERE s.name = name;
END $$;

-- Deletes a schedule (the document it fired stays). Returns 1, or 0 when
-- there was none.
CREATE FUNCTION fetchq.schedule_drop(name text, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.schedule_name_check(name);
    DELETE FROM fetchq.schedules AS s WHERE s.name = name;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Every schedule, by name.
CREATE FUNCTION fetchq.schedule_list()
RETURNS TABLE (name varchar, cron text, time_zone text, queue varchar, subject varchar, payload jsonb,
               version integer, priority integer, revision bigint, next_tick_at timestamptz,
               last_tick_at timestamptz, ticks bigint, ticks_collapsed bigint, ticks_skipped bigint,
               last_error text, created_at timestamptz, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT s.name, s.cron, s.time_zone, s.queue, s.subject, s.payload, s.version, s.priority, s.revision,
           s.next_tick_at, s.last_tick_at, s.ticks, s.ticks_collapsed, s.ticks_skipped, s.last_error,
           s.created_at, s.updated_at
    FROM fetchq.schedules AS s ORDER BY s.name
$$;

-- Schedules the leader has work for: not planned yet, or due at db_now; at
-- most `lim`, those without an error first (so broken schedules, retried
-- every round, never crowd out the others), then the most overdue. Also returns now() so the caller plans
-- from the database's clock, not its own.
CREATE FUNCTION fetchq.schedule_due(lim integer DEFAULT 100)
RETURNS TABLE (name varchar, cron text, time_zone text, revision bigint, next_tick_at timestamptz,
               last_error text, db_now timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT s.name, s.cron, s.time_zone, s.revision, s.next_tick_at, s.last_error, now()
    FROM fetchq.schedules AS s
    WHERE s.next_tick_at IS NULL OR s.next_tick_at <= now()
    ORDER BY s.last_error IS NOT NULL, s.next_tick_at NULLS FIRST, s.name
    LIMIT greatest(lim, 1)
$$;

-- Stores the first tick of a schedule not planned yet, unless it changed
-- meanwhile (another revision) or is planned already. Returns 1 when stored.
CREATE FUNCTION fetchq.schedule_plan(name text, revision bigint, next_tick timestamptz, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM fetchq.arg_check(next_tick IS NOT NULL, 'next_tick must not be NULL');
    UPDATE fetchq.schedules AS s SET next_tick_at = next_tick, last_error = NULL
    WHERE s.name = name AND s.revision = revision AND s.next_tick_at IS NULL;
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Records why a schedule could not be planned or fired (the expression does
-- not parse, the queue is gone); the leader goes on with the others. Unless
-- the schedule changed meanwhile (another revision).
CREATE FUNCTION fetchq.schedule_error(name text, revision bigint, message text, OUT affected_rows integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    UPDATE fetchq.schedules AS s SET last_error = left(message, 1000)
    WHERE s.name = name AND s.revision = revision AND s.last_error IS DISTINCT FROM left(message, 1000);
    GET DIAGNOSTICS affected_rows = ROW_COUNT;
END $$;

-- Fires the tick `expected` of a schedule and plans `next_tick` (the first
-- tick after now(), computed by the caller), in one transaction. Only a caller
-- whose (revision, expected) still match fires: outcome 'lost' otherwise
-- (another leader fired it, or the schedule changed or was dropped).
-- The schedule's row is taken FOR UPDATE SKIP LOCKED: a row locked by someone
-- else (another leader firing it right now, or a long-open transaction that
-- touched it) is 'busy' and left for the next round instead of blocking the
-- leader. The document's row is waited for at most 1 s (lock_timeout, set for
-- this call only): past that the call fails with 55P03 and the leader moves on.
-- `collapsed` is how many further ticks were missed before now() (fired as
-- this one). Outcomes: 'pushed' (a new document), 'played' (an existing one
-- made due now), 'skipped' (the document is active), 'lost', 'busy'.
-- Errors (FQ002 when the queue is gone, FQ005 for a payload too large) roll
-- everything back: the tick stays due and the caller records the error.
CREATE FUNCTION fetchq.schedule_fire(name text, revision bigint, expected timestamptz, next_tick timestamptz,
                                     collapsed bigint DEFAULT 0, OUT outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    s fetchq.schedules;
    st integer;
    old_lock_timeout text := current_setting('lock_timeout');
BEGIN
    PERFORM fetchq.arg_check(next_tick IS NOT NULL AND next_tick > expected, 'next_tick must be after expected');
    SELECT t.* INTO s FROM fetchq.schedules AS t WHERE t.name = name FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        outcome := CASE WHEN EXISTS (SELECT 1 FROM fetchq.schedules AS t WHERE t.name = name)
                        THEN 'busy' ELSE 'lost' END;
        RETURN;
    END IF;
    IF s.revision IS DISTINCT FROM revision OR s.next_tick_at IS DISTINCT FROM expected THEN
        outcome := 'lost';
        RETURN;
    END IF;
    UPDATE fetchq.schedules AS t SET next_tick_at = next_tick, last_tick_at = expected, ticks = t.ticks + 1,
           ticks_collapsed = t.ticks_collapsed + greatest(coalesce(collapsed, 0), 0), last_error = NULL
    WHERE t.name = name
    RETURNING t.* INTO s;
    PERFORM set_config('lock_timeout', '1s', true);
    IF fetchq.doc_push(s.queue, s.subject, s.version, s.priority, now(), s.payload) > 0 THEN
        outcome := 'pushed';
    ELSE
        EXECUTE format('SELECT status FROM %s WHERE subject = $1 FOR UPDATE', fetchq.queue_table(s.queue, 'docs'))
        INTO st USING s.subject;
        IF st IS NULL THEN
            -- deleted between the push and the lock: push again
            PERFORM fetchq.doc_push(s.queue, s.subject, s.version, s.priority, now(), s.payload);
            outcome := 'pushed';
        ELSIF st = 2 THEN
            UPDATE fetchq.schedules AS t SET ticks_skipped = t.ticks_skipped + 1 WHERE t.name = s.name;
            outcome := 'skipped';
        ELSE
            EXECUTE format('UPDATE %s SET payload = $2, priority = $3 WHERE subject = $1', fetchq.queue_table(s.queue, 'docs'))
            USING s.subject, s.payload, s.priority;
            PERFORM fetchq.doc_play(s.queue, s.subject);
            outcome := 'played';
        END IF;
    END IF;
    PERFORM set_config('lock_timeout', old_lock_timeout, true);
END $$;

-- Dropping a queue drops its schedules.
CREATE FUNCTION fetchq.schedules_queue_dropped() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fetchq.schedules AS s WHERE s.queue = OLD.name;
    RETURN OLD;
END $$;

CREATE TRIGGER queues_drop_schedules AFTER DELETE ON fetchq.queues
FOR EACH ROW EXECUTE FUNCTION fetchq.schedules_queue_dropped();
