-- The first restored document the engine would not accept ({staged}: the
-- staging table or the new queue's table), as text; no row: all good.
SELECT left(s::text, 200) FROM {staged} AS s
WHERE s.status NOT IN (-1, 0, 1, 2, 3) OR s.version < 0 OR s.subject = ''
LIMIT 1
