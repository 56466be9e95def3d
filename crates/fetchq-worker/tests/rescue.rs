//! Worker registrations (schema 21): a crashed process's documents run
//! elsewhere after `rescue_after` instead of after their lease, and a process
//! that is only cut off cancels its handlers before maintenance may hand
//! their documents to anyone else.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fetchq_core::{NewDoc, PickOptions};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{Link, count, eventually, handler};

const ACTIVE: i32 = 2;
const COMPLETED: i32 = 3;

/// What the handlers saw: (subject, attempt, what, when, when by the wall clock).
type Events = Arc<Mutex<Vec<(String, i32, &'static str, Instant, SystemTime)>>>;

fn record(events: &Events, subject: &str, attempt: i32, what: &'static str) {
    events.lock().unwrap().push((
        subject.to_owned(),
        attempt,
        what,
        Instant::now(),
        SystemTime::now(),
    ));
}

fn first(events: &Events, what: &str) -> Option<Instant> {
    events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.2 == what)
        .map(|e| e.3)
}

/// A handler that, on the first attempt, waits for its cancellation (and
/// records it); on later attempts completes at once.
fn patient(options: HandlerOptions, events: &Events) -> impl fetchq_worker::Handler {
    let events = events.clone();
    handler(options, move |doc, ctx| {
        let events = events.clone();
        Box::pin(async move {
            record(&events, &doc.subject, doc.attempts, "start");
            if doc.attempts == 1 {
                ctx.cancellation_token().cancelled().await;
                record(&events, &doc.subject, doc.attempts, "cancelled");
                return Ok(Outcome::reject("cancelled"));
            }
            record(&events, &doc.subject, doc.attempts, "complete");
            Ok(Outcome::complete())
        })
    })
}

#[tokio::test]
async fn a_crashed_process_s_documents_run_elsewhere_after_rescue_after_not_their_lease() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push_many(
        "q",
        &(0..20)
            .map(|i| NewDoc::new(format!("d{i:02}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    // a process that registered, leased everything for five minutes, and died
    let dead = c
        .worker_register("crashed-host", 4242, Duration::from_secs(1))
        .await
        .unwrap();
    let picked = c
        .pick(
            "q",
            &PickOptions::new()
                .limit(20)
                .lease(Duration::from_secs(300))
                .owner(Some(dead)),
        )
        .await
        .unwrap();
    assert_eq!(picked.len(), 20);
    let since = Instant::now();

    let done = Arc::new(Mutex::new(Vec::new()));
    let seen = done.clone();
    let h = handler(HandlerOptions::new("q").concurrency(4), move |doc, _ctx| {
        let seen = seen.clone();
        Box::pin(async move {
            seen.lock()
                .unwrap()
                .push((doc.subject.clone(), doc.attempts));
            Ok(Outcome::complete())
        })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(Some(Duration::from_millis(100)))
        .rescue_after(Some(Duration::from_secs(1)))
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(
        Duration::from_secs(60),
        "the dead process's documents done",
        || async { count(&c, "q", COMPLETED).await == 20 },
    )
    .await;
    let took = since.elapsed();
    eprintln!("20 documents leased for 300 s by a dead process ran elsewhere after {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // retried as orphans are: a second attempt, logged, counted
    assert!(
        done.lock()
            .unwrap()
            .iter()
            .all(|(_, attempts)| *attempts == 2)
    );
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fetchq_data.q__logs WHERE ref_id = 'fetchq:orphan'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 20);
    // the dead registration is gone, the live one is there
    let workers = c.worker_list().await.unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_ne!(workers[0].owner, dead);
    assert!(!c.worker_heartbeat(dead).await.unwrap());
    // the dead process's outcome, arriving late, is refused
    let late = c.complete(&picked[0].lease, None).await;
    assert!(
        matches!(late, Err(fetchq_core::Error::LeaseLost { .. })),
        "{late:?}"
    );
    stop.cancel();
    run.await.unwrap().unwrap();
    // a clean stop removes the registration
    assert!(c.worker_list().await.unwrap().is_empty());
    c.metric_log_pack().await.unwrap();
    let counters = c.metric_get_common("q").await.unwrap();
    assert_eq!(counters.active, 0, "{counters:?}");
    assert_eq!(counters.completed, 20, "{counters:?}");
}

#[tokio::test]
async fn a_cut_off_process_cancels_its_handlers_before_maintenance_may_release_them() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("s1")).await.unwrap();
    let link = Link::start(&db).await;
    let pool = link.pool(&db);
    let events: Events = Arc::default();
    let rescue_after = Duration::from_secs(2);
    let rt = Runtime::new(pool)
        .handle_signals(false)
        .migrate(false)
        // maintenance runs in this test, on a direct connection
        .maintenance(None)
        .rescue_after(Some(rescue_after))
        .register(patient(
            HandlerOptions::new("q")
                .concurrency(1)
                .lease(Duration::from_secs(300)),
            &events,
        ));
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "the handler started", || async {
        first(&events, "start").is_some()
    })
    .await;
    // let one renewal through after the start, then cut the cable
    tokio::time::sleep(rescue_after / 4).await;
    link.cut();
    let cut_at = Instant::now();
    // maintenance, as another process would run it, as often as it can
    let released_at = loop {
        let rescue = c.mnt_rescue_workers().await.unwrap();
        if rescue.released > 0 {
            assert_eq!(rescue.released, 1);
            break Instant::now();
        }
        assert!(cut_at.elapsed() < Duration::from_secs(20), "never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cancelled_at = first(&events, "cancelled").expect("the handler was cancelled");
    eprintln!(
        "cut at 0; handler cancelled at {:?}; lease released by maintenance at {:?}",
        cancelled_at - cut_at,
        released_at - cut_at
    );
    assert!(
        cancelled_at < released_at,
        "the handler ran on after maintenance released its document"
    );
    assert!(released_at - cut_at >= rescue_after / 2);
    // released: pending again, the attempt counted
    assert_eq!(count(&c, "q", ACTIVE).await, 0);

    // the cable back: the process finds its registration gone, registers
    // anew and runs the document again (a second attempt)
    link.restore();
    eventually(
        Duration::from_secs(20),
        "done after the link came back",
        || async { count(&c, "q", COMPLETED).await == 1 },
    )
    .await;
    let runs: Vec<(i32, &str)> = events.lock().unwrap().iter().map(|e| (e.1, e.2)).collect();
    assert_eq!(
        runs,
        vec![
            (1, "start"),
            (1, "cancelled"),
            (2, "start"),
            (2, "complete")
        ]
    );
    assert!(stats.total().lease_lost >= 1, "{:?}", stats.total());
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_outage_shorter_than_half_of_rescue_after_cancels_nothing() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("s1")).await.unwrap();
    let link = Link::start(&db).await;
    let pool = link.pool(&db);
    let (release, released) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(Mutex::new(None)),
    );
    let (go, cancelled) = (release.clone(), released.clone());
    let h = handler(HandlerOptions::new("q").concurrency(1), move |_doc, ctx| {
        let (go, cancelled) = (go.clone(), cancelled.clone());
        Box::pin(async move {
            tokio::select! {
                () = go.notified() => Ok(Outcome::complete()),
                () = ctx.cancellation_token().cancelled() => {
                    *cancelled.lock().unwrap() = Some(SystemTime::now());
                    Ok(Outcome::reject("cancelled"))
                }
            }
        })
    });
    let rt = Runtime::new(pool)
        .handle_signals(false)
        .migrate(false)
        .maintenance(Some(Duration::from_millis(100)))
        .rescue_after(Some(Duration::from_secs(10)))
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "the handler started", || async {
        count(&c, "q", ACTIVE).await == 1
    })
    .await;
    link.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    link.restore();
    tokio::time::sleep(Duration::from_millis(500)).await;
    release.notify_one();
    eventually(Duration::from_secs(20), "completed", || async {
        count(&c, "q", COMPLETED).await == 1
    })
    .await;
    assert_eq!(*released.lock().unwrap(), None, "the handler was cancelled");
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_lease_running_out_on_a_cut_link_cancels_its_handler_before_it_ends_in_the_database() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("s1")).await.unwrap();
    let link = Link::start(&db).await;
    let pool = link.pool(&db);
    let events: Events = Arc::default();
    let rt = Runtime::new(pool)
        .handle_signals(false)
        .migrate(false)
        .maintenance(None)
        // no registration: only the lease
        .rescue_after(None)
        .register(patient(
            HandlerOptions::new("q")
                .concurrency(1)
                .lease(Duration::from_secs(2)),
            &events,
        ));
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "the handler started", || async {
        first(&events, "start").is_some()
    })
    .await;
    link.cut();
    eventually(Duration::from_secs(10), "the handler cancelled", || async {
        first(&events, "cancelled").is_some()
    })
    .await;
    // the lease had not ended in the database when the handler was cancelled
    let cancelled_at: chrono::DateTime<chrono::Utc> = events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.2 == "cancelled")
        .map(|e| e.4.into())
        .unwrap();
    let ends: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT next_iteration FROM fetchq_data.q__docs WHERE subject = 's1' AND status = 2",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let left = ends - cancelled_at;
    eprintln!("handler cancelled {left:?} before its lease ended in the database");
    assert!(
        left > chrono::Duration::zero(),
        "cancelled {left:?} after the lease ended"
    );
    link.restore();
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_schema_without_registrations_still_works_with_leases_only() {
    let db = TestDb::new().await;
    let pool = db.database_at(20).await;
    let c = fetchq_core::Client::new(pool.clone());
    c.queue_create("q").await.unwrap();
    c.push_many(
        "q",
        &(0..10)
            .map(|i| NewDoc::new(format!("d{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let h = handler(HandlerOptions::new("q").concurrency(2), |_doc, _ctx| {
        Box::pin(async move { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new(pool.clone())
        .handle_signals(false)
        .migrate(false)
        .rescue_after(Some(Duration::from_secs(1)))
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(30), "all done on schema 20", || async {
        count(&c, "q", COMPLETED).await == 10
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_rescue_after_out_of_range_is_a_config_error() {
    let db = TestDb::new().await;
    for bad in [Duration::from_millis(10), Duration::from_secs(2 * 86_400)] {
        let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
            Box::pin(async move { Ok(Outcome::complete()) })
        });
        let err = Runtime::new(db.pool.clone())
            .handle_signals(false)
            .rescue_after(Some(bad))
            .register(h)
            .run()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, fetchq_worker::WorkerError::Config(m) if m.contains("rescue_after")),
            "{err}"
        );
    }
}
