-- The first staged document that is not a valid row, as text (none: no row).
SELECT left(d::text, 200) FROM fetchq_restore_rows
WHERE jsonb_typeof(d) IS DISTINCT FROM 'array' OR jsonb_array_length(d) <> 11
   OR jsonb_typeof(d->0) IS DISTINCT FROM 'string' OR length(d->>0) NOT BETWEEN 1 AND 255
   OR jsonb_typeof(d->1) IS DISTINCT FROM 'number' OR (d->>1)::numeric < 0
   OR jsonb_typeof(d->2) IS DISTINCT FROM 'number'
   OR jsonb_typeof(d->3) IS DISTINCT FROM 'number' OR (d->>3) NOT IN ('-1', '0', '1', '2', '3')
   OR jsonb_typeof(d->4) IS DISTINCT FROM 'number' OR jsonb_typeof(d->5) IS DISTINCT FROM 'number'
   OR jsonb_typeof(d->6) IS DISTINCT FROM 'string' OR jsonb_typeof(d->7) IS DISTINCT FROM 'string'
LIMIT 1
