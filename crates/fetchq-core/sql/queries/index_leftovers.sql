-- Invalid indexes of queue documents tables, quoted: what a REINDEX (or
-- CREATE INDEX) CONCURRENTLY leaves behind when it fails or its session dies
-- (`<index>_ccnew`, or `_ccold` when it failed while swapping). Such an index
-- is still updated by every write and never used. Tables with an index build
-- under way are left out: the invalid index may be that build's.
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_class AS t ON t.oid = i.indrelid
WHERE n.nspname = 'fetchq_data' AND t.relname LIKE '%\_\_docs'
  AND NOT i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index AS p WHERE p.relid = i.indrelid)
ORDER BY 1
