-- How many documents match a filter, counting at most a cap.
SELECT matched, capped FROM fetchq.doc_count($1, $2, $3, $4, $5)
