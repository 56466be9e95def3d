-- Creates or replaces one schedule of a dump through fetchq.schedule_set: a
-- new one has no next tick yet, so the maintenance leader plans its first
-- tick after now() (ticks missed while it was in the file are not replayed).
-- $1 name, $2 cron, $3 time zone, $4 queue, $5 subject, $6 payload,
-- $7 version, $8 priority.
SELECT s.was_created FROM fetchq.schedule_set($1, $2, $3, $4, $5, $6, $7, $8) AS s
