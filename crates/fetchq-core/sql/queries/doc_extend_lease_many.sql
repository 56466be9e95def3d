SELECT subject::text FROM fetchq.doc_extend_lease_many($1, $2, $3, $4)
