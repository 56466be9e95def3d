-- seconds until an idle pool of version $2 should look again, on the
-- database's clock (NULL: nothing planned for it, or the queue is paused)
SELECT CASE WHEN next_iteration IS NOT NULL
            THEN greatest(extract(epoch FROM next_iteration - clock_timestamp()), 0)::float8 END
FROM fetchq.queue_next_due($1, $2)
