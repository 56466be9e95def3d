SELECT affected_rows FROM fetchq.doc_reject($1, $2, $3, $4, $5, $6)
