-- Applies the completed-document retention of a dump's settings row $2 to
-- queue $1 through fetchq.queue_set_completed_retention (which builds or drops
-- the index maintenance reads). A file without the column (schema 19 or
-- older) leaves the queue's retention as it is.
SELECT fetchq.queue_set_completed_retention($1, s.completed_retention)
FROM jsonb_populate_record(NULL::fetchq.queues, $2) AS s
WHERE $2 ? 'completed_retention'
