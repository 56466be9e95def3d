-- Real counts by status of one queue's documents ({docs} = its docs table),
-- in one pass over the table (on a vacuumed table of 1M documents as fast
-- as five counts through the statuses' partial indexes, 60 to 85 ms). The
-- completed ones are the rest (a status the engine does not know is refused
-- by a restore anyway).
SELECT c.cnt, c.pln, c.pnd, c.act, c.cnt - c.pln - c.pnd - c.act - c.kll, c.kll
FROM (SELECT count(*) AS cnt,
             count(*) FILTER (WHERE d.status = 0) AS pln,
             count(*) FILTER (WHERE d.status = 1) AS pnd,
             count(*) FILTER (WHERE d.status = 2) AS act,
             count(*) FILTER (WHERE d.status = -1) AS kll
      FROM {docs} AS d) AS c
