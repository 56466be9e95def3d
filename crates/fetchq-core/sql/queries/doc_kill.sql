SELECT affected_rows FROM fetchq.doc_kill($1, $2, $3, $4)
