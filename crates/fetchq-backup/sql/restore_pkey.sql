-- The primary key of a queue's documents table ($1 = qualified table name):
-- quoted name and definition, to drop it before a bulk load and add it after.
SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = $1::regclass AND contype = 'p'
