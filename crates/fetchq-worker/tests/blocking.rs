//! Handlers that block their thread (synchronous work inside an async
//! handler, never reaching an `.await`): on a multi-threaded runtime the
//! max runtime and the shutdown deadline still hold, because the runtime
//! waits for the handler from another task than the one polling it.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fetchq_core::{NewDoc, Status};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{error_logs, eventually, handler};

/// Blocks the calling thread until `stop` says so or `cap` has passed;
/// returns whether `stop` ended it.
fn block_until(stop: impl Fn() -> bool, cap: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < cap {
        if stop() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_that_never_yields_is_still_cut_at_its_max_runtime() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("spin")).await.unwrap();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let seen = saw_cancel.clone();
    let opts = HandlerOptions::new("q").max_runtime(Some(Duration::from_millis(300)));
    let h = handler(opts, move |_doc, ctx| {
        let seen = seen.clone();
        Box::pin(async move {
            // synchronous work that only looks at its token, never awaits
            let token = ctx.cancellation_token().clone();
            let cancelled = block_until(|| token.is_cancelled(), Duration::from_secs(40));
            seen.store(cancelled, Ordering::SeqCst);
            Ok(Outcome::complete())
        })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(
        Duration::from_secs(20),
        "rejected past its max runtime",
        || async { stats.total().rejected == 1 },
    )
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.total();
    assert_eq!((s.timed_out, s.completed), (1, 0), "{s:?}");
    eventually(
        Duration::from_secs(10),
        "the handler saw its token fire",
        || async { saw_cancel.load(Ordering::SeqCst) },
    )
    .await;
    let logs = error_logs(&c, "q", "spin").await;
    assert!(logs.iter().any(|m| m.contains("max runtime")), "{logs:?}");
    assert_ne!(c.get("q", "spin").await.unwrap().status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_ends_within_its_deadline_despite_a_handler_that_never_yields() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("stuck")).await.unwrap();
    // the handler ignores its token: only the test lets it go, at the end
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let h = handler(
        HandlerOptions::new("q").max_runtime(None),
        move |_doc, _ctx| {
            let r = r.clone();
            Box::pin(async move {
                block_until(|| r.load(Ordering::SeqCst), Duration::from_secs(40));
                Ok(Outcome::complete())
            })
        },
    );
    let grace = Duration::from_secs(2);
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(grace)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "picked", || async {
        stats.total().picked == 1
    })
    .await;
    let asked = Instant::now();
    stop.cancel();
    // generous: the point is that shutdown does not wait for the handler
    let ended = tokio::time::timeout(grace + Duration::from_secs(15), run).await;
    let took = asked.elapsed();
    release.store(true, Ordering::SeqCst);
    let result = ended.unwrap_or_else(|_| panic!("shutdown waited for the handler ({took:?})"));
    result.unwrap().unwrap();
    let doc = c.get("q", "stuck").await.unwrap();
    assert_eq!(
        (doc.status, doc.attempts),
        (Status::Pending, 0),
        "given back, the attempt not burned"
    );
    assert_eq!(stats.total().released, 1);
}
