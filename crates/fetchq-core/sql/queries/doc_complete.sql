SELECT affected_rows FROM fetchq.doc_complete($1, $2, $3, $4)
