//! Review of per-key concurrency (schema 17): a dump and restore keeps each
//! document's key (format version 2) and the queue's key concurrency.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use common::dump_bytes;
use fetchq_backup::{DumpOptions, RestoreOptions};
use fetchq_core::NewDoc;
use fetchq_testing::TestDb;
use sqlx::Row;

#[tokio::test]
async fn keys_and_the_key_concurrency_survive_a_dump_and_restore() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("src").await.unwrap();
    let docs: Vec<NewDoc> = (0..6)
        .map(|i| NewDoc::new(format!("d{i}")).key(format!("host{}", i % 2)))
        .collect();
    c.push_many("src", &docs).await.unwrap();
    c.queue_set_key_concurrency("src", Some(1)).await.unwrap();

    let file = dump_bytes(&db.pool, &DumpOptions::queues(["src"])).await;
    let opts = RestoreOptions::default().rename("copy");
    fetchq_backup::restore(&db.pool, &opts, Cursor::new(file))
        .await
        .unwrap();
    let keyed: i64 =
        sqlx::query("SELECT count(*) FROM fetchq_data.copy__docs WHERE key IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get(0);
    assert_eq!(keyed, 6, "document keys dropped by dump/restore");
    let same: bool = sqlx::query_scalar(
        "SELECT (SELECT array_agg((subject, key) ORDER BY subject) FROM fetchq_data.src__docs)
              = (SELECT array_agg((subject, key) ORDER BY subject) FROM fetchq_data.copy__docs)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(same, "a document's key changed in dump/restore");
    assert_eq!(
        c.queue_status("copy").await.unwrap().key_concurrency,
        Some(1),
        "key concurrency dropped by dump/restore"
    );
}
