-- The pick's commit does not wait for its WAL flush (synchronous_commit off for
-- this transaction only): should the server crash before the flush, the lease
-- simply never happened and the worker's resolution fails on its token, so
-- nothing is completed twice. Completions stay durable.
SELECT d.subject::text, d.payload, d.version, d.priority, d.attempts, d.iterations, d.created_at,
       d.last_iteration, d.next_iteration, d.lease_token
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit,
     fetchq.doc_pick($1, $2, $3, $4) AS d
