SELECT coalesce($1, now() + $2)
