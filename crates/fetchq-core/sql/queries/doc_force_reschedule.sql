SELECT affected_rows FROM fetchq.doc_force_reschedule($1, $2, coalesce($3, now() + coalesce($4, interval '0')))
