-- pick.sql for a queue with a rate limit (schema 16) or a key concurrency
-- (schema 17), which pick.sql hands over: the same statement, within the
-- rate limit. The parameters and columns are pick.sql's, then rate_wait_in
-- and keyed.
--
-- A rate-limited queue (schema 16) leases at most one document per free slot
-- of fetchq.rate_slots and stamps the slots it used with now(); see
-- 0016_rate_limits.sql for why that is exact. On a queue without a limit the
-- slot parts are never executed: `slots` is read only through the CASE of
-- `allowed`, and `used` sits behind a one-time filter on `limited` (EXPLAIN
-- ANALYZE: "never executed"). The slot scan keeps {limit} as its LIMIT, and
-- `picked` keeps it too, so the plan does not depend on the free slots; the
-- documents picked beyond them are locked for this statement only. The last
-- column, when documents were due but the limit left some or all of them, is
-- the seconds until the next slot opens (NULL otherwise), so the worker sleeps
-- until then instead of polling; next_due_in is then not computed.
--
-- A queue with key concurrency (schema 17) leases nothing here: the last
-- column, keyed, tells the client to pick through fetchq.doc_pick, which
-- keeps the per-key caps (see 0017_key_concurrency.sql).
WITH active AS (
    SELECT q.rate_limit IS NOT NULL AS limited, q.rate_per, q.key_concurrency IS NOT NULL AS keyed
    FROM fetchq.queues AS q WHERE q.name = $1::text AND q.is_active
), plain AS (
    -- a queue with key concurrency is picked by fetchq.doc_pick instead
    SELECT 1 FROM active AS a WHERE NOT a.keyed
), promoted AS (
    UPDATE {docs} AS d SET status = 1
    WHERE d.subject = ANY (ARRAY(
        SELECT p.subject FROM {docs} AS p
        WHERE p.status = 0 AND p.next_iteration <= now() AND EXISTS (SELECT 1 FROM plain)
        ORDER BY p.next_iteration LIMIT greatest({limit}, 100) FOR UPDATE SKIP LOCKED))
    RETURNING 1
), picked AS (
    SELECT d.subject, d.next_iteration AS due_at, d.priority, d.attempts FROM {docs} AS d
    WHERE d.status = 1 AND d.version = $2::integer AND d.next_iteration <= now() AND EXISTS (SELECT 1 FROM plain)
    ORDER BY d.priority DESC, d.next_iteration, d.attempts
    LIMIT {limit} FOR UPDATE SKIP LOCKED
), slots AS (
    SELECT s.slot, s.used_at FROM fetchq.rate_slots AS s
    WHERE s.queue = $1::text AND s.used_at <= now() - (SELECT a.rate_per FROM active AS a WHERE a.limited)
    ORDER BY s.used_at LIMIT {limit} FOR UPDATE SKIP LOCKED
), allowed AS (
    SELECT CASE WHEN coalesce((SELECT a.limited FROM active AS a), false)
                THEN (SELECT count(*) FROM slots) ELSE {limit} END AS n
), leased AS (
    UPDATE {docs} AS d
    SET status = 2, attempts = d.attempts + 1, next_iteration = now() + $3::interval,
        lease_token = (SELECT CASE WHEN $5::bigint IS NULL THEN gen_random_uuid() ELSE
            (lpad(to_hex($5::bigint), 16, '0') || right(translate(gen_random_uuid()::text, '-', ''), 16))::uuid END)
    WHERE d.subject = ANY (ARRAY(
        SELECT p.subject FROM picked AS p ORDER BY p.priority DESC, p.due_at, p.attempts
        LIMIT (SELECT a.n FROM allowed AS a)))
    RETURNING d.subject, d.payload, d.version, d.priority, d.attempts, d.iterations,
              d.created_at, d.last_iteration, d.next_iteration, d.lease_token
), counted AS (
    SELECT c.picked, c.promoted
    FROM (SELECT (SELECT count(*) FROM leased) AS picked, (SELECT count(*) FROM promoted) AS promoted) AS c
), used AS (
    UPDATE fetchq.rate_slots AS s SET used_at = now()
    WHERE (SELECT a.limited FROM active AS a) AND s.queue = $1::text
      AND s.slot = ANY (ARRAY(SELECT u.slot FROM slots AS u ORDER BY u.used_at
                              LIMIT (SELECT c.picked FROM counted AS c)))
    RETURNING s.slot
), counters AS (
    INSERT INTO fetchq.metrics_writes (queue, metric, increment)
    SELECT $1::text, v.metric, v.increment
    FROM counted AS c,
         LATERAL (VALUES ('pkd', c.picked), ('act', c.picked), ('pnd', c.promoted - c.picked), ('pln', -c.promoted))
         AS v(metric, increment)
    WHERE v.increment <> 0
), short AS (
    -- the rate limit left due documents behind
    SELECT coalesce((SELECT a.limited FROM active AS a), false)
           AND (SELECT count(*) FROM picked) > (SELECT c.picked FROM counted AS c) AS limited
)
SELECT c.promoted, l.subject::text, l.payload, l.version, l.priority, l.attempts, l.iterations, l.created_at,
       l.last_iteration, l.next_iteration, l.lease_token,
       CASE WHEN $4::boolean AND c.picked = 0 AND NOT (SELECT h.limited FROM short AS h) THEN
           (SELECT extract(epoch FROM n.next_iteration - clock_timestamp())::float8
            FROM fetchq.queue_next_due($1::text, $2::integer) AS n)
       END AS next_due_in,
       CASE WHEN (SELECT h.limited FROM short AS h) THEN
           -- the oldest slot this pick did not use, or one it used (now)
           -- a slot old enough but not taken here is held by a pick in
           -- progress elsewhere: it counts as used now
           (SELECT extract(epoch FROM least(min(CASE WHEN s.used_at <= now() - (SELECT a.rate_per FROM active AS a)
                                                     THEN now() ELSE s.used_at END), now())
                                      + (SELECT a.rate_per FROM active AS a) - clock_timestamp())::float8
            FROM fetchq.rate_slots AS s
            WHERE s.queue = $1::text AND s.slot <> ALL (ARRAY(SELECT u.slot FROM used AS u)))
       END AS rate_wait_in,
       coalesce((SELECT a.keyed FROM active AS a), false) AS keyed
FROM counted AS c LEFT JOIN (leased AS l JOIN picked AS p ON p.subject = l.subject) ON true
ORDER BY l.priority DESC, p.due_at, l.attempts
