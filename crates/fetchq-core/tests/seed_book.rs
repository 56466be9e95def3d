//! The SQL examples of the FetchQ book, verbatim with `fetchq.` in front of the
//! names, run through psql-like simple queries.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq_testing::TestDb;
use sqlx::Row;

async fn one_int(db: &TestDb, sql: &str) -> i64 {
    let row = sqlx::query(sql).fetch_one(&db.pool).await.unwrap();
    row.try_get::<i32, _>(0)
        .map(i64::from)
        .unwrap_or_else(|_| row.get::<i64, _>(0))
}

#[tokio::test]
async fn the_getting_started_examples_work_verbatim() {
    let db = TestDb::new().await;
    let was_init: bool = sqlx::query_scalar("SELECT * FROM fetchq.init();")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(was_init);

    let row = sqlx::query("SELECT * FROM fetchq.queue_create('foo');")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(row.get::<bool, _>("was_created"));
    let row = sqlx::query("SELECT * FROM fetchq.queue_create('foo');")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!row.get::<bool, _>("was_created"), "create is an upsert");

    assert_eq!(
        one_int(
            &db,
            "SELECT * FROM fetchq.doc_push('foo', 'john', 0, 0, NOW() + INTERVAL '20s', '{}');"
        )
        .await,
        1
    );

    sqlx::query("SELECT * FROM fetchq.queue_create('avengers');")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(one_int(&db, r#"SELECT * FROM fetchq.doc_push('avengers', 'ironman', 0, 0, NOW(), '{ "lastScore": 20 }');"#).await, 1);
    assert_eq!(one_int(&db, r#"SELECT * FROM fetchq.doc_push('avengers', 'hulk', 0, 0, NOW(), '{ "lastScore": 18 }');"#).await, 1);
    assert_eq!(
        one_int(&db, r#"SELECT * FROM fetchq.doc_push('avengers', 'ironman', 0, 0, NOW(), '{ "lastScore": 20 }');"#).await,
        0,
        "duplicates are ignored"
    );

    let row = sqlx::query(r#"SELECT * FROM fetchq.doc_upsert('foo', 'john', 0, 1, NOW() + INTERVAL '1m', '{"age":22}');"#)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<i32, _>("queued_docs"),
            row.get::<i32, _>("updated_docs")
        ),
        (0, 1)
    );

    sqlx::query("SELECT * FROM fetchq.queue_create('sendmail');")
        .execute(&db.pool)
        .await
        .unwrap();
    let subject: String = sqlx::query_scalar(
        r#"SELECT * FROM fetchq.doc_append('sendmail', '{"to":"foo@foo.it", "template":"signup", "subject":"welcome!"}', 0, 0);"#,
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(subject.len(), 36, "a UUID subject");

    // consume: the book's workers pick, then resolve
    let picked: Vec<String> =
        sqlx::query_scalar("SELECT subject::text FROM fetchq.doc_pick('avengers', 0, 2, '5m');")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(picked.len(), 2);
    assert_eq!(
        one_int(
            &db,
            "SELECT * FROM fetchq.doc_reschedule('avengers', 'ironman', NOW() + INTERVAL '2 days');"
        )
        .await,
        1
    );
    assert_eq!(one_int(&db, r#"SELECT * FROM fetchq.doc_reject('avengers', 'hulk', 'error message', '{"details":true}');"#).await, 1);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = 'fetchq_data' AND tablename LIKE 'foo%' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables, ["foo__docs", "foo__logs", "foo__metrics"]);

    let row = sqlx::query("SELECT * FROM fetchq.queue_drop('foo');")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(row.get::<bool, _>("was_dropped"));
}
