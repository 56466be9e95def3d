-- The documents in plain COPY text (as pg_dump reads a table): the writer
-- turns each row into a document line (format::copy_doc_to_json), which costs
-- the server far less than a json_build_array per row. {key} is ", key", or
-- nothing for a documents table without the column (schema 16 or older: the
-- writer then writes a null key).
COPY {docs} (subject, version, priority, status, attempts, iterations,
             next_iteration, created_at, last_iteration, lease_token, payload{key}) TO STDOUT
