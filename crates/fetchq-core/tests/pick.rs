//! Picking: order, versions, planned documents, pause, and exclusivity under concurrency.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use fetchq_core::{NewDoc, PickOptions, Schedule, Status};
use fetchq_testing::TestDb;
use serde_json::json;

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    db
}

fn subjects(docs: &[fetchq_core::Document]) -> Vec<&str> {
    docs.iter().map(|d| d.subject.as_str()).collect()
}

#[tokio::test]
async fn pick_order_is_priority_then_time_then_attempts() {
    let db = setup().await;
    let c = &db.client;
    let now = Utc::now();
    let ago = |mins: i64| Schedule::at(now - chrono::Duration::minutes(mins));
    c.push("q", &NewDoc::new("low-old").priority(0).at(ago(30)))
        .await
        .unwrap();
    c.push("q", &NewDoc::new("high-new").priority(5).at(ago(1)))
        .await
        .unwrap();
    c.push("q", &NewDoc::new("high-old").priority(5).at(ago(20)))
        .await
        .unwrap();
    c.push("q", &NewDoc::new("low-new").priority(0).at(ago(2)))
        .await
        .unwrap();
    c.push(
        "q",
        &NewDoc::new("future")
            .priority(9)
            .at(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let picked = c.pick("q", &PickOptions::new().limit(10)).await.unwrap();
    assert_eq!(
        subjects(&picked),
        ["high-old", "high-new", "low-old", "low-new"]
    );
}

#[tokio::test]
async fn pick_sets_active_attempts_and_a_lease() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("a").payload(json!({"n": 1})))
        .await
        .unwrap();
    let before = Utc::now();
    let doc = c
        .pick("q", &PickOptions::new().lease(Duration::from_secs(120)))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (doc.attempts, doc.iterations, doc.payload.clone()),
        (1, 0, json!({"n": 1}))
    );
    assert!(doc.lease.expires_at > before + chrono::Duration::seconds(110));
    let state = c.get("q", "a").await.unwrap();
    assert_eq!(state.status, Status::Active);
    assert_eq!(state.next_iteration, doc.lease.expires_at);
    assert!(
        c.pick("q", &PickOptions::new()).await.unwrap().is_empty(),
        "an active document is not picked again"
    );
}

#[tokio::test]
async fn a_planned_document_is_pickable_at_its_time_without_maintenance() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("soon").at(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(c.pick("q", &PickOptions::new()).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let picked = c.pick("q", &PickOptions::new()).await.unwrap();
    assert_eq!(subjects(&picked), ["soon"]);
    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get_common("q").await.unwrap().status_counts(),
        c.metric_compute("q").await.unwrap()
    );
}

#[tokio::test]
async fn pick_targets_one_version() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("v0")).await.unwrap();
    c.push("q", &NewDoc::new("v1").version(1)).await.unwrap();
    let v1 = c
        .pick("q", &PickOptions::new().version(1).limit(10))
        .await
        .unwrap();
    assert_eq!(subjects(&v1), ["v1"]);
    let v0 = c
        .pick("q", &PickOptions::new().version(0).limit(10))
        .await
        .unwrap();
    assert_eq!(subjects(&v0), ["v0"]);
}

#[tokio::test]
async fn a_paused_queue_picks_nothing_but_accepts_pushes() {
    let db = setup().await;
    let c = &db.client;
    assert!(c.queue_pause("q").await.unwrap());
    assert!(!c.queue_pause("q").await.unwrap());
    assert!(c.push("q", &NewDoc::new("a")).await.unwrap());
    assert!(c.pick("q", &PickOptions::new()).await.unwrap().is_empty());
    assert!(!c.queue_status("q").await.unwrap().is_active);
    assert!(c.queue_resume("q").await.unwrap());
    assert_eq!(c.pick("q", &PickOptions::new()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sixteen_concurrent_pickers_process_every_document_exactly_once() {
    const DOCS: usize = 10_000;
    let db = TestDb::with_pool_size(20).await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    let batch: Vec<NewDoc> = (0..DOCS)
        .map(|i| NewDoc::new(format!("doc-{i:05}")))
        .collect();
    for chunk in batch.chunks(2_000) {
        c.push_many("q", chunk).await.unwrap();
    }
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let docs = c.pick("q", &PickOptions::new().limit(25)).await.unwrap();
                    if docs.is_empty() {
                        break;
                    }
                    for doc in docs {
                        c.complete(&doc.lease, None).await.unwrap();
                        seen.push(doc.subject);
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::with_capacity(DOCS);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), DOCS, "every document processed exactly once");
    assert_eq!(unique.len(), DOCS);

    c.metric_log_pack().await.unwrap();
    let truth = c.metric_compute("q").await.unwrap();
    assert_eq!(truth.completed, DOCS as i64);
    let counters = c.metric_get_common("q").await.unwrap();
    assert_eq!(counters.status_counts(), truth);
    assert_eq!(counters.picked, DOCS as i64);
    assert_eq!(counters.processed, DOCS as i64);
}
