SELECT affected_rows FROM fetchq.doc_force_kill($1, $2)
