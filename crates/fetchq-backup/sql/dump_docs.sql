-- The documents in plain COPY text (as pg_dump reads a table): the writer
-- turns each row into a document line (format::copy_doc_to_json), which costs
-- the server far less than a json_build_array per row.
COPY {docs} (subject, version, priority, status, attempts, iterations,
             next_iteration, created_at, last_iteration, lease_token, payload) TO STDOUT
