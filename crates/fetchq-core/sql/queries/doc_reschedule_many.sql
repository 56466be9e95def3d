SELECT subject::text FROM fetchq.doc_reschedule_many($1, $2, $3, $4, $5, $6)
