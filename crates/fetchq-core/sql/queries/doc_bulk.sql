SELECT changed, last_subject
FROM fetchq.doc_bulk($1, $2, $3, $4, $5, $6, $7, $8)
