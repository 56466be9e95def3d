SELECT affected_rows FROM fetchq.doc_play($1, $2)
