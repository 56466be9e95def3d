-- The session of an index rebuild (one connection of its own):
-- - lock_timeout ($1): each lock wait of REINDEX CONCURRENTLY (for writers,
--   for transactions with older snapshots) gives up after it;
-- - no statement or idle timeouts a role or database may set: a rebuild of a
--   big key takes minutes, and killing it leaves an invalid index behind;
-- - keepalives: on a cut link the server ends the session (and the rebuild)
--   within about 15 s instead of the system's two hours (ignored on a Unix
--   socket).
SELECT set_config('lock_timeout', $1, false),
       set_config('statement_timeout', '0', false),
       set_config('idle_in_transaction_session_timeout', '0', false),
       set_config('tcp_keepalives_idle', '5', false),
       set_config('tcp_keepalives_interval', '2', false),
       set_config('tcp_keepalives_count', '3', false),
       set_config('tcp_user_timeout', '15000', false)
