-- Real counts by status of one queue's documents ({docs} = its docs table).
SELECT count(*), count(*) FILTER (WHERE status = 0), count(*) FILTER (WHERE status = 1),
       count(*) FILTER (WHERE status = 2), count(*) FILTER (WHERE status = 3),
       count(*) FILTER (WHERE status = -1)
FROM {docs}
