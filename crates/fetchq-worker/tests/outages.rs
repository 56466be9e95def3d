//! Logging under database trouble: a burst of killed backends is one incident,
//! one warning and one "over" line, not a line per kill.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::NewDoc;
use fetchq_testing::TestDb;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

use common::LogCapture;

struct Busy;

#[async_trait]
impl Handler for Busy {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("q").concurrency(4)
    }
    async fn handle(&self, _doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Outcome::reschedule_in(Duration::from_millis(10)))
    }
}

// current_thread: every task of the runtime runs on this thread, where the
// capturing subscriber is the default
#[tokio::test(flavor = "current_thread")]
async fn a_burst_of_killed_backends_is_logged_as_one_incident() {
    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    db.client
        .push_many(
            "q",
            &(0..20)
                .map(|i| NewDoc::new(format!("d{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let admin = db.pool_on("postgres", 1).await;
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(Some(Duration::from_millis(200)))
        .shutdown_timeout(Duration::from_secs(2))
        .register(Busy);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    let start = Instant::now();
    while stats.total().rescheduled < 20 {
        assert!(start.elapsed() < Duration::from_secs(10), "no work done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 2 kills a second for 4 seconds, of every backend of the test database
    let mut killed = 0;
    for _ in 0..8 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()) AS k",
        )
        .bind(&db.name)
        .fetch_one(&admin)
        .await
        .unwrap();
        killed += n;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(killed >= 8, "backends were killed ({killed})");
    // healthy again: the incident ends with one line
    let start = Instant::now();
    while capture.count(tracing::Level::INFO, "database trouble over") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the end of the incident was not logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let warns = capture.count(tracing::Level::WARN, "database trouble");
    let failures = capture.count(tracing::Level::DEBUG, "database trouble continues");
    assert_eq!(
        warns, 1,
        "one warning for the whole burst ({failures} further failures at debug)"
    );
    assert_eq!(
        capture.count(tracing::Level::INFO, "database trouble over"),
        1
    );
    assert!(stats.total().rescheduled > 20, "work went on");
}
