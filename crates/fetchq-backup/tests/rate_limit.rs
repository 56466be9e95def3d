//! A queue's rate limit survives a dump and restore, with fresh slots.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use common::dump_bytes;
use fetchq_backup::{DumpOptions, OnConflict, RestoreOptions};
use fetchq_core::{NewDoc, PickOptions};
use fetchq_testing::TestDb;

#[tokio::test]
async fn the_rate_limit_comes_back_with_fresh_slots() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("src").await.unwrap();
    let docs: Vec<NewDoc> = (0..10).map(|i| NewDoc::new(format!("d{i}"))).collect();
    c.push_many("src", &docs).await.unwrap();
    c.queue_set_rate_limit("src", Some("4/1h".parse().unwrap()))
        .await
        .unwrap();
    c.queue_set_key_concurrency("src", Some(3)).await.unwrap();
    // every slot used in the source
    assert_eq!(
        c.pick("src", &PickOptions::new().limit(10))
            .await
            .unwrap()
            .len(),
        4
    );
    c.queue_create("plain").await.unwrap();

    let file = dump_bytes(&db.pool, &DumpOptions::queues(["src"])).await;
    let opts = RestoreOptions::default().rename("copy");
    fetchq_backup::restore(&db.pool, &opts, Cursor::new(file.clone()))
        .await
        .unwrap();
    let copy = c.queue_status("copy").await.unwrap();
    assert_eq!(copy.rate_limit, Some("4/1h".parse().unwrap()));
    assert_eq!(copy.key_concurrency, Some(3));
    // the copy's slots are its own and fresh: 4 of its 10 documents go
    assert_eq!(
        c.pick("copy", &PickOptions::new().limit(10))
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(
        c.pick("copy", &PickOptions::new().limit(10))
            .await
            .unwrap()
            .is_empty()
    );
    // the source's slots are untouched
    assert!(
        c.pick("src", &PickOptions::new().limit(10))
            .await
            .unwrap()
            .is_empty()
    );

    // replacing a queue without a limit gives it the file's limit
    let opts = RestoreOptions::default()
        .rename("plain")
        .on_conflict(OnConflict::Replace);
    fetchq_backup::restore(&db.pool, &opts, Cursor::new(file))
        .await
        .unwrap();
    assert_eq!(
        c.queue_status("plain").await.unwrap().rate_limit,
        Some("4/1h".parse().unwrap())
    );
}
