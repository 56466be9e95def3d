SELECT queued_docs, updated_docs
FROM fetchq.doc_upsert($1, $2, $3, $4, coalesce($5, now() + coalesce($6, interval '0')), $7, $8::text)
