-- $5 is an absolute time; when NULL the document is due at now() + $6 (a delay, or now)
SELECT queued_docs
FROM fetchq.doc_push($1, $2, $3, $4, coalesce($5, now() + coalesce($6, interval '0')), $7)
