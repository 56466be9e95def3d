-- Applies the rate limit of a dump's settings row $2 to queue $1 through
-- fetchq.queue_set_rate_limit (which builds the queue's slots; fresh slots, as
-- the old ones belonged to the old database's picks). A file without the
-- column (schema 15 or older) leaves the queue's limit as it is.
SELECT fetchq.queue_set_rate_limit($1, s.rate_limit, s.rate_per)
FROM jsonb_populate_record(NULL::fetchq.queues, $2) AS s
WHERE $2 ? 'rate_limit'
