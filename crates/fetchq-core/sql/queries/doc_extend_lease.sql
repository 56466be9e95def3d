SELECT affected_rows FROM fetchq.doc_extend_lease($1, $2, $3, $4)
