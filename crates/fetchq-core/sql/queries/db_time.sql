SELECT coalesce($1, now() + coalesce($2, interval '0'))
