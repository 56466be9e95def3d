//! Review of worker registrations (schema 21, commit bf10262): the cases
//! where the safety claim or the promised behaviour does not hold. Each test
//! asserts what the documentation of `Runtime::rescue_after` promises.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{Link, count, eventually, handler};

const ACTIVE: i32 = 2;
const COMPLETED: i32 = 3;

/// Cancellations the handler saw, and how many runs it finished.
#[derive(Default)]
struct Seen {
    cancelled: Mutex<Vec<i32>>,
    completed: AtomicUsize,
}

/// Attempt 1 waits until `go` (or its cancellation); later attempts complete.
fn waiting(seen: &Arc<Seen>, go: &Arc<tokio::sync::Notify>) -> impl fetchq_worker::Handler {
    let (seen, go) = (seen.clone(), go.clone());
    handler(HandlerOptions::new("q").concurrency(1), move |doc, ctx| {
        let (seen, go) = (seen.clone(), go.clone());
        Box::pin(async move {
            if doc.attempts == 1 {
                tokio::select! {
                    () = go.notified() => {}
                    () = ctx.cancellation_token().cancelled() => {
                        seen.cancelled.lock().unwrap().push(doc.attempts);
                        return Ok(Outcome::reject("cancelled"));
                    }
                }
            }
            seen.completed.fetch_add(1, Ordering::SeqCst);
            Ok(Outcome::complete())
        })
    })
}

/// A runtime through `link` with `rescue_after`, no maintenance, running
/// [`waiting`]; waits until its document runs.
async fn start(
    db: &TestDb,
    link: &Link,
    rescue_after: Duration,
    seen: &Arc<Seen>,
    go: &Arc<tokio::sync::Notify>,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Result<(), fetchq_worker::WorkerError>>,
) {
    db.client.queue_create("q").await.unwrap();
    db.client
        .push("q", &fetchq_core::NewDoc::new("s1"))
        .await
        .unwrap();
    let pool = link.pool(db);
    let rt = Runtime::new(pool)
        .handle_signals(false)
        .migrate(false)
        .maintenance(None)
        .rescue_after(Some(rescue_after))
        .register(waiting(seen, go));
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    let c = db.client.clone();
    eventually(Duration::from_secs(20), "the handler started", || async {
        count(&c, "q", ACTIVE).await == 1
    })
    .await;
    // a few renewals through, at a random phase
    tokio::time::sleep(rescue_after / 2).await;
    (stop, run)
}

/// Finding 1: the fence comes a tick before half of rescue_after, and a
/// renewal hanging on the link uses up the trust left: a cut of a third of
/// rescue_after (renewals every sixth) always cancels the handler, although
/// "an outage shorter than half of rescue_after cancels nothing".
#[tokio::test]
async fn a_cut_of_a_quarter_of_rescue_after_cancels_nothing() {
    let db = TestDb::new().await;
    let link = Link::start(&db).await;
    let (seen, go) = (
        Arc::new(Seen::default()),
        Arc::new(tokio::sync::Notify::new()),
    );
    // the promise: an outage shorter than half of rescue_after less one
    // renewal interval (a sixth), i.e. a third, cancels nothing
    let rescue_after = Duration::from_secs(6);
    let (stop, run) = start(&db, &link, rescue_after, &seen, &go).await;
    link.cut();
    tokio::time::sleep(rescue_after / 4).await; // 1.5 s; half is 3 s, a renewal every 1 s
    link.restore();
    tokio::time::sleep(Duration::from_millis(500)).await;
    go.notify_one();
    let cancelled = seen.cancelled.lock().unwrap().clone();
    assert!(
        cancelled.is_empty(),
        "a 1.5 s cut with rescue_after 6 s cancelled the handler"
    );
    stop.cancel();
    run.await.unwrap().unwrap();
}

/// Finding 1, the restart form: one renewal that fails (connections closed
/// and refused, as while PostgreSQL restarts) fences the process at the next
/// round, whatever the length of the outage: the trust ends three ticks
/// after the last good renewal, and the round after a failed one starts at
/// two ticks.
#[tokio::test]
async fn a_restart_shorter_than_half_of_rescue_after_cancels_nothing() {
    let db = TestDb::new().await;
    let link = Link::start(&db).await;
    let (seen, go) = (
        Arc::new(Seen::default()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let rescue_after = Duration::from_secs(10);
    let (stop, run) = start(&db, &link, rescue_after, &seen, &go).await;
    // 3 s down: one renewal (every 1.67 s) fails; half is 5 s
    link.down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    link.up();
    tokio::time::sleep(Duration::from_secs(3)).await;
    go.notify_one();
    let cancelled = seen.cancelled.lock().unwrap().clone();
    assert!(
        cancelled.is_empty(),
        "a 3 s restart with rescue_after 10 s cancelled the handler"
    );
    stop.cancel();
    run.await.unwrap().unwrap();
}

/// Finding 2: a fence whose registration then renews (the database never
/// lapsed it) cancels the handler and discards its result, but nothing gives
/// its lease back: the document waits for its lease (300 s by default),
/// longer than a crash would have cost (rescue_after).
#[tokio::test]
async fn a_document_cancelled_by_a_fence_runs_again_before_its_lease_ends() {
    let db = TestDb::new().await;
    let link = Link::start(&db).await;
    let (seen, go) = (
        Arc::new(Seen::default()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let rescue_after = Duration::from_secs(3);
    let (stop, run) = start(&db, &link, rescue_after, &seen, &go).await;
    // longer than half (a fence is right), shorter than rescue_after (the
    // registration never lapses)
    link.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    link.restore();
    let s = seen.clone();
    eventually(Duration::from_secs(5), "the handler cancelled", || async {
        !s.cancelled.lock().unwrap().is_empty()
    })
    .await;
    let c = db.client.clone();
    assert!(c.worker_list().await.unwrap().iter().all(|w| !w.lost));
    let since = Instant::now();
    // given back without burning an attempt, it runs as attempt 1 again:
    // let that run finish
    let waited = async {
        while count(&c, "q", COMPLETED).await < 1 {
            go.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let ran = tokio::time::timeout(Duration::from_secs(15), waited).await;
    assert!(
        ran.is_ok(),
        "the cancelled document is still leased {:?} after the fence (lease 300 s): it was not given back",
        since.elapsed()
    );
    stop.cancel();
    run.await.unwrap().unwrap();
}

/// Finding 3: a forced shutdown leaves its leases held (documented: they
/// come back after their lease), but it also removes the registration, so
/// maintenance cannot release them after rescue_after as it would after a
/// crash: 300 s instead of 1 s.
#[tokio::test]
async fn a_forced_shutdown_leaves_its_leases_to_the_rescue() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &fetchq_core::NewDoc::new("s1")).await.unwrap();
    let h = handler(HandlerOptions::new("q").concurrency(1), |_doc, ctx| {
        Box::pin(async move {
            ctx.cancellation_token().cancelled().await;
            Ok(Outcome::reject("cancelled"))
        })
    });
    let rescue_after = Duration::from_secs(1);
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .rescue_after(Some(rescue_after))
        .register(h);
    let (stop, force) = (rt.shutdown_token(), rt.force_token());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "the handler started", || async {
        count(&c, "q", ACTIVE).await == 1
    })
    .await;
    stop.cancel();
    force.cancel();
    assert!(run.await.unwrap().is_err(), "a forced shutdown");
    assert_eq!(
        count(&c, "q", ACTIVE).await,
        1,
        "left leased, as documented"
    );
    tokio::time::sleep(rescue_after + Duration::from_millis(200)).await;
    let rescue = c.mnt_rescue_workers().await.unwrap();
    assert_eq!(
        rescue.released,
        1,
        "the registration was removed with a lease still held: {rescue:?}, workers {:?}",
        c.worker_list().await.unwrap()
    );
}

/// Finding 4: the abort of a handler that ignores its cancellation comes
/// `cancel_wait` (up to 1 s) after the fence, and nothing bounds it by
/// rescue_after: with a short rescue_after (200 ms is accepted) another
/// process runs the document while the cut-off one still runs it.
#[tokio::test]
async fn a_handler_ignoring_cancellation_never_runs_beside_its_rescuer() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &fetchq_core::NewDoc::new("s1")).await.unwrap();
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let make = |running: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
        handler(HandlerOptions::new("q").concurrency(1), move |doc, _ctx| {
            let (running, most) = (running.clone(), most.clone());
            Box::pin(async move {
                struct Out(Arc<AtomicUsize>);
                impl Drop for Out {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _out = Out(running);
                if doc.attempts == 1 {
                    // ignores its cancellation (an await point: abortable)
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Ok(Outcome::complete())
            })
        })
    };
    let rescue_after = Duration::from_millis(600);
    let link = Link::start(&db).await;
    let pool = link.pool(&db);
    let a = Runtime::new(pool)
        .handle_signals(false)
        .migrate(false)
        .maintenance(None)
        .rescue_after(Some(rescue_after))
        .register(make(running.clone(), most.clone()));
    let stop_a = a.shutdown_token();
    let run_a = tokio::spawn(a.run());
    eventually(Duration::from_secs(20), "A runs the document", || async {
        count(&c, "q", ACTIVE).await == 1
    })
    .await;
    link.cut();
    let b = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .migrate(false)
        .maintenance(Some(Duration::from_millis(50)))
        .rescue_after(Some(rescue_after))
        .register(make(running.clone(), most.clone()));
    let stop_b = b.shutdown_token();
    let run_b = tokio::spawn(b.run());
    eventually(Duration::from_secs(20), "B completed it", || async {
        count(&c, "q", COMPLETED).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "the document ran in two processes at once"
    );
    stop_b.cancel();
    run_b.await.unwrap().unwrap();
    link.restore();
    stop_a.cancel();
    let _ = run_a.await.unwrap();
}

/// Finding 5: the maintenance leader holds its session lock on a connection
/// of its own; cut off, its session lives on in the server (the server
/// learns of the cut only by TCP keepalive, hours by default), so no other
/// process becomes leader and nobody releases the cut-off process's leases:
/// a crashed-or-cut-off leader's documents wait for their lease after all.
///
/// Known open: the leader's session now asks the server to probe its link
/// (keepalives every 2 s after 5 s idle, `tcp_user_timeout` 15 s), which ends
/// the session of a leader behind a cut cable within about 15 s; but this
/// test's `Link` is a userspace proxy that answers the server's probes itself
/// (it models a peer that hangs, not a cut cable), so the session lives on
/// and the test still fails. Taking leadership from a leader whose session
/// is alive but silent needs a leadership that expires (a lease row) instead
/// of a session lock.
#[tokio::test]
#[ignore = "open: a leader hung behind a live TCP peer keeps its session lock (see the comment)"]
async fn a_cut_off_leader_s_documents_run_elsewhere_after_rescue_after() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &fetchq_core::NewDoc::new("s1")).await.unwrap();
    let (seen, go) = (
        Arc::new(Seen::default()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let rescue_after = Duration::from_secs(1);
    let link = Link::start(&db).await;
    let pool = link.pool(&db);
    let a = Runtime::new(pool)
        .handle_signals(false)
        .migrate(false)
        .maintenance(Some(Duration::from_millis(100)))
        .rescue_after(Some(rescue_after))
        .register(waiting(&seen, &go));
    let stop_a = a.shutdown_token();
    let run_a = tokio::spawn(a.run());
    eventually(Duration::from_secs(20), "A runs the document", || async {
        count(&c, "q", ACTIVE).await == 1
    })
    .await;
    // A leads (its lock is the only advisory lock of this database)
    eventually(Duration::from_secs(20), "A leads", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        n == 1
    })
    .await;
    link.cut();
    let (seen_b, go_b) = (
        Arc::new(Seen::default()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let b = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .migrate(false)
        .maintenance(Some(Duration::from_millis(100)))
        .rescue_after(Some(rescue_after))
        .register(waiting(&seen_b, &go_b));
    let stop_b = b.shutdown_token();
    let run_b = tokio::spawn(b.run());
    let since = Instant::now();
    // given back without burning an attempt, it runs as attempt 1 again:
    // let that run finish
    let waited = async {
        while count(&c, "q", COMPLETED).await < 1 {
            go.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let ran = tokio::time::timeout(Duration::from_secs(15), waited).await;
    assert!(
        ran.is_ok(),
        "A was cut off {:?} ago (rescue_after 1 s) and its document still waits: nobody else leads",
        since.elapsed()
    );
    stop_b.cancel();
    run_b.await.unwrap().unwrap();
    link.restore();
    stop_a.cancel();
    let _ = run_a.await.unwrap();
}
