SELECT subject::text FROM fetchq.doc_append($1, $2, $3, $4, $5)
