-- Applies the key concurrency of a dump's settings row $2 to queue $1 through
-- fetchq.queue_set_key_concurrency (which builds the key indexes). A file
-- without the column (schema 16 or older) leaves the queue's cap as it is.
SELECT fetchq.queue_set_key_concurrency($1, s.key_concurrency)
FROM jsonb_populate_record(NULL::fetchq.queues, $2) AS s
WHERE $2 ? 'key_concurrency'
