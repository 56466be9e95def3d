-- The secondary indexes of a queue's documents table ($1 = table name): their
-- quoted names (to drop them before a bulk load) and definitions (to build
-- them again after it).
SELECT quote_ident(indexname), indexdef FROM pg_indexes
WHERE schemaname = 'fetchq_data' AND tablename = $1 AND indexname <> $1 || '_pkey'
ORDER BY indexname
