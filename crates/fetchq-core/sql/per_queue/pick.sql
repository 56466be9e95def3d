-- doc_pick for one queue. $1 queue, $2 version, $3 lease duration, $4 whether
-- to say when to look again if nothing was leased, $5 the lease owner (a
-- registered worker, schema 21: the token's first 8 bytes, as
-- fetchq.lease_token writes them, inlined so that the statement runs on any
-- schema; NULL: a random token); {limit} is
-- the limit, written in as a number. Version, limit and lease are checked by
-- the client.
--
-- Due planned documents are promoted to pending first, as doc_pick does; but
-- all parts of one statement share one snapshot, so the documents promoted
-- here become pickable from the next statement on. The first column, the
-- number promoted, tells the client to pick again when it got less than it
-- asked for. One row with NULL document columns means nothing was leased.
--
-- The limit is part of the text because PostgreSQL estimates an unknown LIMIT
-- at 10% of the table: with a parameter it re-planned this statement on every
-- call (0.8 ms of a 1.2 ms pick of one document). Rows are matched with
-- `= ANY (ARRAY(...))` so that even a plan made for a large limit looks them
-- up by primary key instead of joining the whole table.
--
-- The last column answers an idle worker's next question in the same
-- statement: when $4 is true and nothing was leased, the seconds until the
-- next planned document of version $2 is due (fetchq.queue_next_due, on the
-- database's clock; negative when already due, which the client reads as 0;
-- NULL when none is planned or the queue is paused). The subquery is an
-- initplan, which PostgreSQL runs only when the CASE reaches it: a pick that
-- leased documents, or one with $4 false, never calls it (EXPLAIN ANALYZE:
-- "never executed"; tests/per_queue.rs checks it). It sees the statement's
-- snapshot, so documents promoted here in their first 100 ms of being due
-- still count as planned and due now; the client picks again right away
-- after a promotion anyway.
--
-- The commit waits for its WAL flush like any other (synchronous_commit as the
-- server has it): a lease is durable before its handler starts. Committing it
-- asynchronously let a crash in the next few hundred ms erase the lease while
-- the worker ran the handler, and lease the document again to another worker.
--
-- A queue with a rate limit (schema 16) or a key concurrency (schema 17) is
-- not picked here: the column special tells the client to pick it with
-- pick_limited.sql, and the last, keyed, with fetchq.doc_pick instead.
-- This statement then promotes and leases nothing. Queues without either
-- setting pay one more boolean read from the queue row, nothing else: the
-- limits' slots and locks live only in the other paths.
WITH active AS (
    SELECT q.rate_limit IS NOT NULL OR q.key_concurrency IS NOT NULL AS special,
           q.key_concurrency IS NOT NULL AS keyed
    FROM fetchq.queues AS q WHERE q.name = $1::text AND q.is_active
), plain AS (
    SELECT 1 FROM active AS a WHERE NOT a.special
), promoted AS (
    UPDATE {docs} AS d SET status = 1
    WHERE d.subject = ANY (ARRAY(
        SELECT p.subject FROM {docs} AS p
        WHERE p.status = 0 AND p.next_iteration <= now() AND EXISTS (SELECT 1 FROM plain)
        ORDER BY p.next_iteration LIMIT greatest({limit}, 100) FOR UPDATE SKIP LOCKED))
    RETURNING 1
), picked AS (
    SELECT d.subject, d.next_iteration AS due_at FROM {docs} AS d
    WHERE d.status = 1 AND d.version = $2::integer AND d.next_iteration <= now() AND EXISTS (SELECT 1 FROM plain)
    ORDER BY d.priority DESC, d.next_iteration, d.attempts
    LIMIT {limit} FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE {docs} AS d
    SET status = 2, attempts = d.attempts + 1, next_iteration = now() + $3::interval,
        lease_token = (SELECT CASE WHEN $5::bigint IS NULL THEN gen_random_uuid() ELSE
            (lpad(to_hex($5::bigint), 16, '0') || right(translate(gen_random_uuid()::text, '-', ''), 16))::uuid END)
    WHERE d.subject = ANY (ARRAY(SELECT picked.subject FROM picked))
    RETURNING d.subject, d.payload, d.version, d.priority, d.attempts, d.iterations,
              d.created_at, d.last_iteration, d.next_iteration, d.lease_token
), counted AS (
    SELECT c.picked, c.promoted
    FROM (SELECT (SELECT count(*) FROM leased) AS picked, (SELECT count(*) FROM promoted) AS promoted) AS c
), counters AS (
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1::text, v.metric, v.increment
    FROM counted AS c,
         LATERAL (VALUES ('pkd', c.picked), ('act', c.picked), ('pnd', c.promoted - c.picked), ('pln', -c.promoted))
         AS v(metric, increment)
    WHERE v.increment <> 0
)
SELECT c.promoted, l.subject::text, l.payload, l.version, l.priority, l.attempts, l.iterations, l.created_at,
       l.last_iteration, l.next_iteration, l.lease_token,
       CASE WHEN $4::boolean AND c.picked = 0 AND EXISTS (SELECT 1 FROM plain) THEN
           (SELECT extract(epoch FROM n.next_iteration - clock_timestamp())::float8
            FROM fetchq.queue_next_due($1::text, $2::integer) AS n)
       END AS next_due_in,
       coalesce((SELECT a.special FROM active AS a), false) AS special,
       coalesce((SELECT a.keyed FROM active AS a), false) AS keyed
FROM counted AS c LEFT JOIN (leased AS l JOIN picked AS p ON p.subject = l.subject) ON true
ORDER BY l.priority DESC, p.due_at, l.attempts
