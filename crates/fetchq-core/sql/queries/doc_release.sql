SELECT subject::text FROM fetchq.doc_release($1, $2, $3)
