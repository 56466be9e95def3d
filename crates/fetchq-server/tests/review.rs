//! Regressions found in review.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, WORK, code};
use reqwest::StatusCode;
use serde_json::json;

/// A resolve on a queue that does not exist (or was dropped under a worker)
/// is a 404, whatever the outcomes, and also with no items.
#[tokio::test]
async fn resolve_on_a_missing_queue_is_404_for_every_outcome() {
    let s = Server::start().await;
    let lease = uuid::Uuid::new_v4().to_string();
    let bodies = [
        json!({"results": []}),
        json!({"results": [{"subject": "a", "lease_token": lease, "outcome": "reject", "message": "x"}]}),
        json!({"results": [{"subject": "a", "lease_token": lease, "outcome": "kill"}]}),
        json!({"results": [{"subject": "a", "lease_token": lease, "outcome": "drop"}]}),
        json!({"results": [{"subject": "a", "lease_token": lease, "outcome": "migrate", "version": 2}]}),
        json!({"results": [{"subject": "a", "lease_token": lease, "outcome": "complete"}]}),
        json!({"results": [{"subject": "a", "lease_token": lease, "outcome": "complete"},
                           {"subject": "a", "lease_token": lease, "outcome": "complete"}]}),
    ];
    for body in bodies {
        let (st, b) = s
            .post("/api/v1/queues/nope/resolve", WORK, body.clone())
            .await;
        assert_eq!(
            (st, code(&b)),
            (StatusCode::NOT_FOUND, "FQ002"),
            "{body}: {b}"
        );
    }
    // a queue dropped while a worker holds leases: 404 too
    s.db.client.queue_create("q").await.unwrap();
    s.db.client
        .push_many(
            "q",
            &[fetchq_core::NewDoc::new("a"), fetchq_core::NewDoc::new("b")],
        )
        .await
        .unwrap();
    let (st, picked) = s
        .post("/api/v1/queues/q/pick", WORK, json!({"limit": 2}))
        .await;
    assert_eq!(st, StatusCode::OK);
    s.db.client.queue_drop("q").await.unwrap();
    let results: Vec<_> = picked["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!({"subject": d["subject"], "lease_token": d["lease_token"], "outcome": "reject"}))
        .collect();
    let (st, b) = s
        .post(
            "/api/v1/queues/q/resolve",
            WORK,
            json!({ "results": results }),
        )
        .await;
    assert_eq!((st, code(&b)), (StatusCode::NOT_FOUND, "FQ002"), "{b}");
}

/// A bulk action longer than the request timeout is not cut: each call works
/// for half the timeout, answers `done: false` with `next_after`, and calls
/// that go on from there visit every document exactly once.
#[tokio::test]
async fn a_bulk_longer_than_the_request_timeout_goes_on_in_steps() {
    let s = Server::with_config(fetchq_server::Config {
        tokens: common::tokens(),
        request_timeout: std::time::Duration::from_millis(300),
        ..fetchq_server::Config::default()
    })
    .await;
    let c = &s.db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<_> = (0..3000)
        .map(|i| fetchq_core::NewDoc::new(format!("s{i:05}")))
        .collect();
    c.push_many("q", &docs).await.unwrap();
    let (mut after, mut changed, mut calls) = (serde_json::Value::Null, 0u64, 0);
    loop {
        let (st, b) = s
            .post(
                "/api/v1/queues/q/docs:bulk",
                common::ADMIN,
                json!({"filter": {"status": "pending"}, "action": "kill", "batch": 1, "after": after}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        calls += 1;
        changed += b["changed"].as_u64().unwrap();
        if b["done"].as_bool().unwrap() {
            assert!(b["next_after"].is_null(), "{b}");
            break;
        }
        after = b["next_after"].clone();
        assert!(after.is_string(), "{b}");
        assert!(calls < 3000, "no progress: {b}");
    }
    assert!(
        calls > 1,
        "3,000 one-document batches fit in one 150 ms step?"
    );
    assert_eq!(changed, 3000);
    let killed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fetchq_data.q__docs WHERE status = -1")
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(killed, 3000);
}
