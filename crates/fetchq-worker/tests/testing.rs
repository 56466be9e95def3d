//! The testing helpers (`fetchq_worker::testing`) against a real database.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::time::Duration;

use async_trait::async_trait;
use fetchq_core::{NewDoc, Status};
use fetchq_testing::TestDb;
use fetchq_worker::testing::{self, WaitError};
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Profile {
    handle: String,
}

struct Scrape;

#[async_trait]
impl Handler for Scrape {
    type Payload = Profile;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("q").concurrency(4)
    }
    async fn handle(&self, doc: Doc<Profile>, ctx: Context) -> Result<Outcome, HandlerError> {
        if doc.payload.handle == "loki" {
            return Ok(Outcome::kill());
        }
        // a follow-up document, through the context's client
        ctx.client()
            .push("q", &NewDoc::new(format!("{}-friends", doc.subject)))
            .await?;
        Ok(Outcome::reschedule_in(Duration::from_secs(3600)))
    }
}

#[tokio::test]
async fn run_once_returns_the_handlers_verdict_and_writes_no_outcome() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.push(
        "q",
        &NewDoc::new("ironman").payload(json!({"handle": "tony"})),
    )
    .await
    .unwrap();
    c.push("q", &NewDoc::new("loki").payload(json!({"handle": "loki"})))
        .await
        .unwrap();
    c.push("q", &NewDoc::new("bad").payload(json!({"name": 1})))
        .await
        .unwrap();

    let outcome = testing::run_once(&Scrape, c, "q", "ironman").await.unwrap();
    assert_eq!(outcome.kind(), "reschedule");
    // the document is as it was; what the handler pushed is there
    let doc = testing::require_pushed(c, "q", "ironman").await;
    assert_eq!(doc.status, Status::Pending);
    assert_eq!(doc.attempts, 0);
    testing::require_pushed(c, "q", "ironman-friends").await;
    assert_eq!(
        testing::run_once(&Scrape, c, "q", "loki")
            .await
            .unwrap()
            .kind(),
        "kill"
    );
    // a payload that does not fit is the same error the runtime gives
    let err = testing::run_once(&Scrape, c, "q", "bad").await.unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    let err = testing::run_once(&Scrape, c, "q", "nobody")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run_once"), "{err}");
    testing::require_not_pushed(c, "q", "thanos").await;
}

#[tokio::test]
async fn wait_idle_waits_for_a_worker_and_says_what_is_left() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..50)
        .map(|i| NewDoc::new(format!("d{i}")).payload(json!({"handle": "x"})))
        .collect();
    c.push_many("q", &docs).await.unwrap();
    // nobody works: busy, with the counts
    match testing::wait_idle(c, "q", Duration::from_millis(200)).await {
        Err(WaitError::Busy {
            pending, active, ..
        }) => assert_eq!((pending, active), (50, 0)),
        other => panic!("expected Busy, got {other:?}"),
    }
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .register(Scrape);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    // 50 documents and their 50 follow-ups, all rescheduled an hour away
    testing::wait_idle(c, "q", Duration::from_secs(30))
        .await
        .unwrap();
    stop.cancel();
    run.await.unwrap().unwrap();
    let counters = c.metric_get_common("q").await.unwrap();
    assert_eq!(counters.planned, 100);
    // documents planned for later do not count; a missing queue is an error
    testing::wait_idle(c, "q", Duration::ZERO).await.unwrap();
    assert!(matches!(
        testing::wait_idle(c, "nope", Duration::ZERO).await,
        Err(WaitError::Database(_))
    ));
}

#[tokio::test]
#[should_panic(expected = "expected no document \"d\"")]
async fn require_not_pushed_fails_on_a_pushed_document() {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    db.client.push("q", &NewDoc::new("d")).await.unwrap();
    testing::require_not_pushed(&db.client, "q", "d").await;
}

#[tokio::test]
#[should_panic(expected = "expected document \"d\"")]
async fn require_pushed_fails_on_a_missing_document() {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    testing::require_pushed(&db.client, "q", "d").await;
}
