-- fetchq tables with many dead rows (queues under churn, the metric write-ahead
-- log), quoted, for the maintenance leader to VACUUM between autovacuum visits
SELECT format('%I.%I', t.schemaname, t.relname)
FROM pg_stat_user_tables AS t
WHERE ((t.schemaname = 'fetchq_data' AND t.relname LIKE '%\_\_docs')
       OR (t.schemaname = 'fetchq' AND t.relname = 'metrics_writes'))
  AND t.n_dead_tup > greatest(1000, t.n_live_tup / 10)
ORDER BY t.n_dead_tup DESC
