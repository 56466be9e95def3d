//! Completed-document retention (schema 20) through a dump and restore: the
//! setting is carried, the index maintenance reads is built again, and a file
//! from schema 19 (without the setting) restores to a queue that keeps.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;
use std::time::Duration;

use common::{dump_bytes, plain};
use fetchq_backup::{OnConflict, RestoreOptions};
use fetchq_core::{Client, NewDoc, PickOptions, Retention};
use fetchq_testing::TestDb;
use sqlx::PgPool;

async fn completed_index(pool: &PgPool, queue: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'fetchq_data' AND indexname = $1)",
    )
    .bind(format!("{queue}__docs_completed_idx"))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn complete_some(c: &Client, queue: &str, n: usize) {
    let docs: Vec<NewDoc> = (0..n + 3).map(|i| NewDoc::new(format!("d{i}"))).collect();
    c.push_many(queue, &docs).await.unwrap();
    let picked = c
        .pick(queue, &PickOptions::new().limit(n as i32))
        .await
        .unwrap();
    let items: Vec<_> = picked.into_iter().map(|d| (d.lease, None)).collect();
    assert_eq!(c.complete_many(queue, &items).await.unwrap().len(), n);
}

#[tokio::test]
async fn the_retention_survives_a_dump_and_restore() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("src").await.unwrap();
    complete_some(c, "src", 5).await;
    let day = Retention::After(Duration::from_secs(86_400));
    c.queue_set_completed_retention("src", day).await.unwrap();

    let file = dump_bytes(&db.pool, &plain(&["src"])).await;
    fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default().rename("copy"),
        Cursor::new(file.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        c.queue_status("copy").await.unwrap().completed_retention,
        day
    );
    assert!(completed_index(&db.pool, "copy").await);
    assert_eq!(c.metric_compute("copy").await.unwrap().completed, 5);
    // the old completions are deleted by maintenance of the copy as usual
    sqlx::query("UPDATE fetchq_data.copy__docs SET last_iteration = now() - interval '2 days' WHERE status = 3")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(c.mnt_drop_completed("copy", 100).await.unwrap(), 5);
    assert_eq!(
        c.metric_get_common("copy").await.unwrap().status_counts(),
        c.metric_compute("copy").await.unwrap()
    );

    // replacing a queue that keeps takes the file's setting
    c.queue_create("other").await.unwrap();
    fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default()
            .rename("other")
            .on_conflict(OnConflict::Replace),
        Cursor::new(file),
    )
    .await
    .unwrap();
    assert_eq!(
        c.queue_status("other").await.unwrap().completed_retention,
        day
    );
}

#[tokio::test]
async fn a_schema_19_file_restores_to_a_queue_that_keeps() {
    let db = TestDb::new().await;
    let old = db.database_at(19).await;
    sqlx::raw_sql(
        "SELECT fetchq.queue_create('old');
         SELECT fetchq.doc_push('old', 'a'); SELECT fetchq.doc_push('old', 'b');
         SELECT fetchq.doc_pick('old', 0, 1, '5 minutes');
         SELECT fetchq.doc_complete('old', 'a');",
    )
    .execute(&old)
    .await
    .unwrap();
    let (file, summary) = fetchq_backup::dump_into(&old, &plain(&["old"]), Vec::new())
        .await
        .unwrap();
    assert_eq!(summary.header.schema_version, 19);
    assert!(
        summary.header.queues[0]
            .settings
            .get("completed_retention")
            .is_none()
    );
    old.close().await;

    let c = &db.client;
    fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default().rename("from19"),
        Cursor::new(file.clone()),
    )
    .await
    .unwrap();
    let q = c.queue_status("from19").await.unwrap();
    assert_eq!(q.completed_retention, Retention::Keep);
    assert!(!completed_index(&db.pool, "from19").await);
    assert_eq!(c.metric_compute("from19").await.unwrap().completed, 1);

    // replacing a queue with a retention: a file without the setting leaves it
    c.queue_create("mail").await.unwrap();
    c.queue_set_completed_retention("mail", Retention::AtOnce)
        .await
        .unwrap();
    fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default()
            .rename("mail")
            .on_conflict(OnConflict::Replace),
        Cursor::new(file),
    )
    .await
    .unwrap();
    assert_eq!(
        c.queue_status("mail").await.unwrap().completed_retention,
        Retention::AtOnce
    );
    assert!(completed_index(&db.pool, "mail").await);
}
