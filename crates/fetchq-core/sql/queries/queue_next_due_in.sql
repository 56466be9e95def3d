-- seconds until the next planned document, on the database's clock (NULL: none)
SELECT CASE WHEN next_iteration IS NOT NULL
            THEN greatest(extract(epoch FROM next_iteration - clock_timestamp()), 0)::float8 END
FROM fetchq.queue_next_due($1)
