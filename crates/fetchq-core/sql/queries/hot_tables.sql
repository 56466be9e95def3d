-- fetchq tables with many dead rows (queues under churn, the metric write-ahead
-- log), quoted, for the maintenance leader to VACUUM between autovacuum visits.
-- Many: 10% of the live rows, at least 1,000 and at most 1,000,000. The cap is
-- for big queues: a pick's promotion walks the planned index from its oldest
-- end, over the entries of dead versions until a VACUUM removes them, so the
-- pick's cost follows the number of dead rows, not their share (at 100M
-- documents, 10% let 8M dead rows pile up and the pick took twice as long).
SELECT format('%I.%I', t.schemaname, t.relname)
FROM pg_stat_user_tables AS t
WHERE ((t.schemaname = 'fetchq_data' AND t.relname LIKE '%\_\_docs')
       OR (t.schemaname = 'fetchq' AND t.relname = 'metrics_writes'))
  AND t.n_dead_tup > greatest(1000, least(t.n_live_tup / 10, 1000000))
ORDER BY t.n_dead_tup DESC
