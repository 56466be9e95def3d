#![allow(clippy::unwrap_used, dead_code)]

use fetchq_backup::{Compression, DumpOptions};
use sqlx::PgPool;

/// Fills `queue` with `n` documents in every status with every field set
/// (priorities, versions, attempts, iterations, last_iteration, leases,
/// payloads with quotes, backslashes, tabs, newlines and non-ASCII text, keys
/// on two documents of three, some with the same odd bytes, one of 255
/// characters), plus error logs and metric snapshots, then repairs its
/// counters.
pub async fn fill(pool: &PgPool, queue: &str, n: i64) {
    sqlx::query("SELECT fetchq.queue_create($1)")
        .bind(queue)
        .execute(pool)
        .await
        .unwrap();
    let docs = format!("fetchq_data.\"{queue}__docs\"");
    sqlx::query(&format!(
        r#"INSERT INTO {docs} (subject, version, priority, status, attempts, iterations, next_iteration,
                               created_at, last_iteration, lease_token, payload, key)
           SELECT 's' || i || CASE WHEN i % 7 = 0 THEN E'\\q"é\t' ELSE '' END,
                  i % 3, (i % 11) - 5,
                  (ARRAY[-1, 0, 1, 2, 3])[1 + i % 5],
                  i % 4, i % 9,
                  timestamptz '2026-01-01 00:00:00.123456+00' + i * interval '1 second',
                  timestamptz '2025-01-01 00:00:00.654321+00' + i * interval '1 millisecond',
                  CASE WHEN i % 2 = 0 THEN now() - i * interval '1 microsecond' END,
                  CASE WHEN i % 5 = 3 THEN gen_random_uuid() END,
                  jsonb_build_object('i', i, 'text', E'line\nnext "quoted" back\\slash\ttab ünï', 'arr', jsonb_build_array(i, 1.5, null, true)),
                  CASE WHEN i = 2 THEN repeat('ü', 255)
                       WHEN i % 3 <> 0 THEN 'host' || (i % 10) || CASE WHEN i % 7 = 1 THEN E'\\q"é\t\n' ELSE '' END END
           FROM generate_series(1, $1) AS i"#
    ))
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    let logs = format!("fetchq_data.\"{queue}__logs\"");
    sqlx::query(&format!(
        r#"INSERT INTO {logs} (created_at, subject, message, details, ref_id)
           SELECT now() - i * interval '1 minute', 's' || i, E'boom\n"' || i, CASE WHEN i % 2 = 0 THEN jsonb_build_object('k', i) END,
                  CASE WHEN i % 3 = 0 THEN 'ref' || i END
           FROM generate_series(1, 50) AS i"#
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("SELECT * FROM fetchq.metric_reset($1)")
        .bind(queue)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("SELECT fetchq.metric_snap($1)")
        .bind(queue)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE fetchq.queues SET max_attempts = 7, logs_retention = '3 days 2 hours', retry_delay = '2.5 seconds', retry_delay_max = '10 minutes', retry_jitter = 0.35, max_payload_size = 4096, current_version = 2, is_active = false, config = '{\"x\": 1}' WHERE name = $1")
        .bind(queue).execute(pool).await.unwrap();
}

pub async fn dump_bytes(pool: &PgPool, opts: &DumpOptions) -> Vec<u8> {
    let (out, _) = fetchq_backup::dump_into(pool, opts, Vec::new())
        .await
        .unwrap();
    out
}

pub fn plain(queues: &[&str]) -> DumpOptions {
    DumpOptions::queues(queues.iter().copied()).compression(Compression::None)
}

/// Everything a restore could change, as text: queues, jobs, counters, and
/// every queue's documents, logs and snapshots (hashed).
pub async fn fingerprint(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, String>(
        r#"SELECT concat_ws(E'\n',
             (SELECT string_agg(to_jsonb(q)::text, ',' ORDER BY name) FROM fetchq.queues q),
             (SELECT string_agg(format('%s/%s/%s', task, queue, settings), ',' ORDER BY task, queue) FROM fetchq.jobs),
             (SELECT string_agg(format('%s/%s/%s', queue, metric, value), ',' ORDER BY queue, metric) FROM fetchq.metrics),
             (SELECT count(*) FROM fetchq.metrics_writes),
             (SELECT string_agg(to_jsonb(s)::text, ',' ORDER BY name) FROM fetchq.schedules s),
             (SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'fetchq_data'))"#,
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

pub async fn table_hash(pool: &PgPool, table: &str) -> String {
    sqlx::query_scalar::<_, Option<String>>(&format!(
        "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
    .unwrap_or_default()
}

/// Recomputes the trailer of a plain dump (a forger's file: well sealed, bad content).
pub fn reseal(text: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let body_end = text[..text.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let body = &text[..body_end];
    let rows = body
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"["))
        .count();
    let sha: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = body.to_vec();
    out.extend_from_slice(
        format!("{{\"end\":\"fetchq-dump\",\"rows\":{rows},\"sha256\":\"{sha}\"}}\n").as_bytes(),
    );
    out
}
