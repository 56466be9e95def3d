//! Batched heartbeats, completions, reschedules and releases; wake-up notifications.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{NewDoc, PickOptions, Schedule, Status};
use fetchq_testing::TestDb;
use serde_json::json;
use sqlx::postgres::PgListener;

async fn setup(n: usize) -> (TestDb, Vec<fetchq_core::Document>) {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..n).map(|i| NewDoc::new(format!("d{i}"))).collect();
    db.client.push_many("q", &docs).await.unwrap();
    let picked = db
        .client
        .pick("q", &PickOptions::new().limit(n as i32))
        .await
        .unwrap();
    (db, picked)
}

#[tokio::test]
async fn batches_act_only_on_leases_still_held() {
    let (db, docs) = setup(4).await;
    let c = &db.client;
    // d0 is resolved behind the batch's back: its lease is gone
    c.complete(&docs[0].lease, None).await.unwrap();
    let leases: Vec<_> = docs.iter().map(|d| d.lease.clone()).collect();

    let mut held = c
        .extend_leases("q", &leases, Duration::from_secs(600))
        .await
        .unwrap();
    held.sort();
    assert_eq!(held, ["d1", "d2", "d3"]);

    let done = c
        .complete_many(
            "q",
            &[
                (leases[0].clone(), None),
                (leases[1].clone(), Some(json!({"ok": 1}))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(done, ["d1"]);
    assert_eq!(c.get("q", "d1").await.unwrap().payload, json!({"ok": 1}));

    let later = Schedule::after(Duration::from_secs(3600));
    let moved = c
        .reschedule_many(
            "q",
            &[
                (leases[1].clone(), later, None),
                (leases[2].clone(), later, Some(json!({"n": 2}))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(moved, ["d2"]);
    let d2 = c.get("q", "d2").await.unwrap();
    assert_eq!(
        (d2.status, d2.iterations, d2.payload),
        (Status::Planned, 1, json!({"n": 2}))
    );

    // release: pending again at once, the pick not counted as an attempt
    assert_eq!(c.release("q", &leases[2..]).await.unwrap(), ["d3"]);
    let d3 = c.get("q", "d3").await.unwrap();
    assert_eq!((d3.status, d3.attempts), (Status::Pending, 0));

    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get_common("q").await.unwrap().status_counts(),
        c.metric_compute("q").await.unwrap()
    );
}

#[tokio::test]
async fn next_due_is_the_earliest_planned_time() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    assert_eq!(c.queue_next_due("q").await.unwrap(), None);
    c.push("q", &NewDoc::new("now")).await.unwrap();
    c.push("q", &NewDoc::new("in_1h").at(Duration::from_secs(3600)))
        .await
        .unwrap();
    c.push("q", &NewDoc::new("in_2h").at(Duration::from_secs(7200)))
        .await
        .unwrap();
    assert_eq!(
        c.queue_next_due("q").await.unwrap(),
        Some(c.get("q", "in_1h").await.unwrap().next_iteration)
    );
}

#[tokio::test]
async fn a_document_becoming_pending_notifies_listeners() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen("fetchq_pending").await.unwrap();

    // a planned push notifies too (schema 10: an idle worker sleeps until the
    // earliest planned time it knows), and so does a pending one
    for doc in [
        NewDoc::new("later").at(Duration::from_secs(3600)),
        NewDoc::new("now"),
    ] {
        c.push("q", &doc).await.unwrap();
        let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((note.channel(), note.payload()), ("fetchq_pending", "q"));
    }
    // one each: nothing else is waiting
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.recv())
            .await
            .is_err()
    );
}
