-- seconds until the next planned document, on the database's clock (NULL: none)
SELECT greatest(extract(epoch FROM next_iteration - clock_timestamp()), 0)::float8
FROM fetchq.queue_next_due($1)
