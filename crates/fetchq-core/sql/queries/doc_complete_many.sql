SELECT subject::text FROM fetchq.doc_complete_many($1, $2, $3, $4)
