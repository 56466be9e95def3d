-- The cron schedules whose target is queue $1, by name: what schedule_set
-- takes (not the next tick or the tick counters: a restore plans anew). Run
-- only when fetchq.schedules exists (schema 18 and later).
SELECT s.name::text, s.cron, s.time_zone, s.subject::text, s.payload, s.version, s.priority
FROM fetchq.schedules AS s
WHERE s.queue = $1
ORDER BY s.name
