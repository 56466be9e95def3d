SELECT affected_rows FROM fetchq.doc_force_drop($1, $2)
