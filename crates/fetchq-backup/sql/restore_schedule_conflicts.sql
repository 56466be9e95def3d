-- The schedules of a dump ($1 = their names) that already exist, locked
-- until commit (a replace or skip then sees them as they stay).
SELECT s.name::text FROM fetchq.schedules AS s
WHERE s.name = ANY($1)
ORDER BY s.name
FOR UPDATE
