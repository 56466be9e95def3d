SELECT affected_rows
FROM fetchq.doc_migrate($1, $2, $3, $4, coalesce($5, now() + coalesce($6, interval '0')), $7)
