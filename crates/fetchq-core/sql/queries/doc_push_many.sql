SELECT queued_docs FROM fetchq.doc_push_many($1, $2)
