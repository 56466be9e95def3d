//! Adversarial review of per-queue rate limits: a slot held by another
//! transaction, and a pick inside a transaction opened long before.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{NewDoc, PickOptions, RateLimit};
use fetchq_testing::TestDb;
use sqlx::Row;

fn rate(text: &str) -> RateLimit {
    text.parse().unwrap()
}

async fn limited_queue(db: &TestDb, queue: &str, docs: usize, limit: &str) {
    let c = &db.client;
    c.queue_create(queue).await.unwrap();
    let batch: Vec<NewDoc> = (0..docs).map(|i| NewDoc::new(format!("d{i:03}"))).collect();
    c.push_many(queue, &batch).await.unwrap();
    c.queue_set_rate_limit(queue, Some(rate(limit)))
        .await
        .unwrap();
}

/// A transaction that leased through `fetchq.doc_pick` and stays open holds
/// the slot it stamped; until it ends, the other pickers' snapshot shows the
/// slot free (its old stamp), and they used to be told to pick again at once
/// (rate_wait 0): a worker pool then picked every 5 ms, leasing nothing, for
/// as long as the transaction stayed open.
#[tokio::test]

async fn a_slot_held_by_an_open_transaction_is_not_a_free_slot_now() {
    let db = TestDb::new().await;
    limited_queue(&db, "held", 5, "1/2s").await;
    let mut holder = db.pool.begin().await.unwrap();
    let leased: i64 =
        sqlx::query("SELECT count(*) FROM fetchq.doc_pick('held', 0, 1, interval '1 minute')")
            .fetch_one(&mut *holder)
            .await
            .unwrap()
            .get(0);
    assert_eq!(leased, 1);

    let opts = PickOptions::new().limit(1);
    for _ in 0..3 {
        let answer = db.client.pick_answer("held", &opts).await.unwrap();
        assert!(answer.docs.is_empty(), "the only slot is taken");
        let wait = answer.rate_wait.expect("due documents wait for the limit");
        // the held slot will be used now (or already was): it opens a window
        // from now, not at once
        assert!(
            wait >= Duration::from_secs(1),
            "a held slot read as free now: rate_wait {wait:?}"
        );
    }
    holder.commit().await.unwrap();
    // after the commit the stamp is visible and the wait is what it says
    let answer = db.client.pick_answer("held", &opts).await.unwrap();
    assert!(answer.docs.is_empty());
    let wait = answer.rate_wait.unwrap();
    assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(2));
}

/// `fetchq.doc_pick` called in a transaction that began long ago stamped the
/// slot with the transaction's start (`now()`), so the slot looked free again
/// `per` after that start, not after the pick: with a transaction open for
/// 1.5 s on a 1/2s queue, a second document was leased 0.5 s after the first.
#[tokio::test]

async fn a_pick_in_an_old_transaction_stamps_the_time_of_the_pick() {
    let db = TestDb::new().await;
    limited_queue(&db, "old", 5, "1/2s").await;
    let mut tx = db.pool.begin().await.unwrap();
    // the transaction's now() is fixed here
    sqlx::query("SELECT now()").execute(&mut *tx).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leased: i64 =
        sqlx::query("SELECT count(*) FROM fetchq.doc_pick('old', 0, 1, interval '1 minute')")
            .fetch_one(&mut *tx)
            .await
            .unwrap()
            .get(0);
    assert_eq!(leased, 1);
    tx.commit().await.unwrap();
    let first = std::time::Instant::now();

    // within 2 s of the first lease nothing more may be leased, whichever
    // way the queue is picked
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(first.elapsed() < Duration::from_millis(1900));
    let docs = db
        .client
        .pick("old", &PickOptions::new().limit(1))
        .await
        .unwrap();
    assert!(
        docs.is_empty(),
        "a second lease {:?} after the first on a 1/2s queue",
        first.elapsed()
    );
    let sql: i64 =
        sqlx::query("SELECT count(*) FROM fetchq.doc_pick('old', 0, 1, interval '1 minute')")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get(0);
    assert_eq!(sql, 0);
}
