-- Real counts by status of one queue's documents ({docs} = its docs table):
-- every document, then those of the statuses with a partial index (the
-- planner can count them from their index instead of a scan of the table);
-- the completed ones are the rest (a status the engine does not know is
-- refused by a restore anyway).
SELECT c.cnt, c.pln, c.pnd, c.act, c.cnt - c.pln - c.pnd - c.act - c.kll, c.kll
FROM (SELECT (SELECT count(*) FROM {docs}) AS cnt,
             (SELECT count(*) FROM {docs} WHERE status = 0) AS pln,
             (SELECT count(*) FROM {docs} WHERE status = 1) AS pnd,
             (SELECT count(*) FROM {docs} WHERE status = 2) AS act,
             (SELECT count(*) FROM {docs} WHERE status = -1) AS kll) AS c
