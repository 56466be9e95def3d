-- Primary keys of queue documents tables at more than $1 times their packed
-- size, quoted, with their tables, the most wasteful first, for REINDEX
-- INDEX CONCURRENTLY.
--
-- Why they bloat: PostgreSQL frees an index page only once it is empty. A
-- queue whose subjects grow (timestamps, sequence numbers, generated mailer
-- ids) and whose documents are mostly deleted (completed-document retention)
-- leaves old leaf pages holding the few survivors: the soak measured its
-- primary key at 6% leaf density. Random subjects refill such pages and stay
-- near 70% full, which this never flags. Only primary keys: the partial
-- indexes hold short-lived statuses (pending, active, planned by time), whose
-- emptied pages VACUUM frees and new entries reuse; a rebuild would only
-- shrink them for a moment, at the price of two scans of the table.
--
-- The packed size is estimated from the key's entries and average width: an
-- entry is an 8-byte header and the key, 8-byte aligned, plus a 4-byte line
-- pointer; a built index fills its leaf pages to 90% of 8,152 usable bytes.
-- Entries: the live and dead rows the statistics count now (updated by every
-- write), or reltuples if VACUUM counted more; so a table filled since its
-- last VACUUM is not taken for bloated. Width: pg_stats, so tables never
-- analyzed are left out.
--
-- A rebuild reads the whole table twice, so it must win back at least 256 kB
-- and a tenth of the table's own size.
WITH idx AS (
    SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, t.relname AS tablename,
           format('%I.%I', n.nspname, t.relname) AS tbl,
           i.indrelid, i.indkey::int2[] AS keys,
           greatest(c.reltuples, s.n_live_tup + s.n_dead_tup) AS entries
    FROM pg_index AS i
    JOIN pg_class AS c ON c.oid = i.indexrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    JOIN pg_class AS t ON t.oid = i.indrelid
    JOIN pg_am AS am ON am.oid = c.relam
    JOIN pg_stat_user_tables AS s ON s.relid = i.indrelid
    WHERE n.nspname = 'fetchq_data' AND t.relname LIKE '%\_\_docs'
      AND i.indisprimary AND i.indisvalid AND am.amname = 'btree' AND i.indexprs IS NULL
      AND c.reltuples >= 0
), width AS (
    SELECT idx.oid, sum(st.avg_width) AS width, count(st.avg_width) AS known
    FROM idx
    CROSS JOIN LATERAL unnest(idx.keys) AS k(attnum)
    JOIN pg_attribute AS a ON a.attrelid = idx.indrelid AND a.attnum = k.attnum
    LEFT JOIN pg_stats AS st
        ON st.schemaname = 'fetchq_data' AND st.tablename = idx.tablename AND st.attname = a.attname
    GROUP BY idx.oid
), sized AS (
    SELECT idx.name, idx.tbl, pg_relation_size(idx.oid) / 8192 AS pages,
           pg_relation_size(idx.indrelid) / 8192 AS table_pages,
           ceil(idx.entries / floor(8152 * 0.9 / (((8 + w.width + 7) / 8) * 8 + 4))) + 1 AS packed
    FROM idx
    JOIN width AS w USING (oid)
    WHERE w.known = cardinality(idx.keys)
)
SELECT name, tbl, pages * 8192 AS bytes, (packed * 8192)::bigint AS packed_bytes
FROM sized
WHERE pages > $1 * packed AND pages - packed >= greatest(32, table_pages / 10)
ORDER BY pages - packed DESC
