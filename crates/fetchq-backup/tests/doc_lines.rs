//! Document lines are built by the dump from plain COPY rows: they must be
//! what `json_build_array` writes (format version 2), for hostile values too,
//! and come back exactly.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use common::{dump_bytes, plain, table_hash};
use fetchq_backup::RestoreOptions;
use fetchq_testing::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_documents_are_written_as_json_build_array_and_restored_exactly() {
    let db = TestDb::new().await;
    sqlx::query("SELECT fetchq.queue_create('hostile')")
        .execute(&db.pool)
        .await
        .unwrap();
    // subjects with tabs, newlines, backslashes, quotes, control characters
    // and non-ASCII text; payloads with escapes, \u escapes and a 2 MB string;
    // timestamps at the edges (infinity, BC, year 10000, whole seconds)
    sqlx::query(
        r#"INSERT INTO fetchq_data.hostile__docs (subject, version, priority, status, attempts, iterations,
                                                 next_iteration, created_at, last_iteration, lease_token, payload)
           VALUES
           (E'tab\there\nnl\\back\\\\slash"q"\r\b\f\v\x01\x1f\x7f', 0, 0, 1, 0, 0,
            'infinity', '-infinity', NULL, NULL, '{"a": "x\u0001y\\z\"\t\n", "b": "\u00e9\u4e2d\ud83d\ude00"}'),
           ('ünïcødé 中文 😀', 2147483647, -2147483648, 0, 2147483647, 9223372036854775807,
            '0044-03-15 12:00:00+00 BC', '10000-01-01 00:00:00+00', '2026-01-01 00:00:00+00',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[1, 2.50, -0.0, 1e400, null, true, "\\\\N"]'),
           (E'\\N', 1, 1, 3, 1, 1, '2026-06-01 23:59:59.999999+00', '2026-06-01 00:00:00.5+00',
            '1999-12-31 23:59:59.000001+00', NULL, '"just a string \\t"'),
           ('huge', 1, 1, -1, 1, 1, now(), now(), now(), NULL,
            jsonb_build_object('big', repeat(E'\\\t"é', 500000), 'nested', '{"x": [[[[{"y": {}}]]]]}'::jsonb)),
           ('active', 1, 1, 2, 1, 1, now() + interval '1 day', now(), now(),
            gen_random_uuid(), '{}')"#,
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("SELECT * FROM fetchq.metric_reset('hostile')")
        .execute(&db.pool)
        .await
        .unwrap();
    // keys: hostile bytes, 255 characters of 4 bytes, NULL
    sqlx::query(
        r#"UPDATE fetchq_data.hostile__docs SET key = CASE subject
             WHEN 'huge' THEN repeat('😀', 255)
             WHEN 'active' THEN E'k\t"q"\\b\n\x01é中'
             WHEN 'ünïcødé 中文 😀' THEN E'\\N' END"#,
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let file = dump_bytes(&db.pool, &plain(&["hostile"])).await;
    let text = String::from_utf8(file.clone()).unwrap();
    let mut lines: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    lines.sort_unstable();
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL timezone = 'UTC'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut expected: Vec<String> = sqlx::query_scalar(
        "SELECT json_build_array(subject, version, priority, status, attempts, iterations, \
         next_iteration, created_at, last_iteration, lease_token, payload, key)::text FROM fetchq_data.hostile__docs",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    expected.sort_unstable();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines, expected);
    for line in &lines {
        assert_eq!(
            serde_json::from_str::<Vec<&serde_json::value::RawValue>>(line)
                .unwrap()
                .len(),
            fetchq_backup::format::DOC_COLUMNS.len()
        );
    }

    let empty = db.create_empty_database().await;
    let pool2 = db.pool_on(&empty, 2).await;
    fetchq_core::migrate(&pool2).await.unwrap();
    let restored = fetchq_backup::restore(&pool2, &RestoreOptions::default(), Cursor::new(file))
        .await
        .unwrap();
    assert_eq!(restored.queues[0].docs_written, 5);
    assert_eq!(restored.queues[0].active_restored_as_due, 1);
    let cols = "subject, version, priority, status, attempts, iterations, next_iteration, created_at, \
                last_iteration, lease_token, payload, key";
    let without_active =
        |t: &str| format!("(SELECT {cols} FROM fetchq_data.{t} WHERE subject <> 'active')");
    assert_eq!(
        table_hash(&db.pool, &without_active("hostile__docs")).await,
        table_hash(&pool2, &without_active("hostile__docs")).await
    );
    let (status, due, no_lease): (i32, bool, bool) = sqlx::query_as(
        "SELECT status, next_iteration <= now(), lease_token IS NULL FROM fetchq_data.hostile__docs WHERE subject = 'active'",
    )
    .fetch_one(&pool2)
    .await
    .unwrap();
    assert_eq!((status, due, no_lease), (1, true, true));
    pool2.close().await;
    db.drop_database(&empty).await;
}
