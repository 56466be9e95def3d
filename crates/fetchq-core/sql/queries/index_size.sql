-- The size of one index, named as SQL writes it, in bytes; NULL when it is
-- gone (its queue was dropped just after the rebuild).
SELECT pg_relation_size(to_regclass($1))
