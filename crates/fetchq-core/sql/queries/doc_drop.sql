SELECT affected_rows FROM fetchq.doc_drop($1, $2, $3)
