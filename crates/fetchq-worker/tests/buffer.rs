//! The pool's local buffer (`batch` above `concurrency`): picks ahead and
//! runs everything once within the concurrency; gives the buffer back at once
//! on shutdown, and after a document waited too long for a slot; never runs
//! a buffered document an operator killed.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fetchq_core::{NewDoc, PickOptions};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};
use tokio::sync::Semaphore;

use common::{count, eventually, handler};

const ACTIVE: i32 = 2;
const PENDING: i32 = 1;

async fn push(db: &TestDb, n: usize) {
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..n).map(|i| NewDoc::new(format!("d{i:03}"))).collect();
    c.push_many("q", &docs).await.unwrap();
}

#[tokio::test]
async fn a_batch_above_the_concurrency_picks_ahead_and_runs_each_once() {
    let db = TestDb::new().await;
    push(&db, 100).await;
    let gate = Arc::new(Semaphore::new(0));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let h = {
        let (gate, running, most, seen) =
            (gate.clone(), running.clone(), most.clone(), seen.clone());
        handler(
            HandlerOptions::new("q").concurrency(2).batch(20),
            move |doc, _ctx| {
                let (gate, running, most, seen) =
                    (gate.clone(), running.clone(), most.clone(), seen.clone());
                Box::pin(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    *seen.lock().unwrap().entry(doc.subject.clone()).or_default() += 1;
                    gate.acquire().await.unwrap().forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(Outcome::complete())
                })
            },
        )
    };
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    // one pick leased 20: 2 running, 18 waiting in the buffer
    // the pick commits before the runtime counts what it brought: wait for both
    eventually(Duration::from_secs(20), "20 leased", || async {
        count(&db.client, "q", ACTIVE).await == 20
            && stats.total().picked == 20
            && running.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(stats.total().picked, 20);
    assert_eq!(running.load(Ordering::SeqCst), 2);
    gate.add_permits(1_000);
    eventually(Duration::from_secs(30), "all completed", || async {
        stats.total().completed == 100
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 2, "ran above the concurrency");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 100);
    assert!(seen.values().all(|n| *n == 1), "a document ran twice");
    assert_eq!(count(&db.client, "q", 3).await, 100);
}

#[tokio::test]
async fn shutdown_gives_the_buffer_back_at_once() {
    let db = TestDb::new().await;
    push(&db, 10).await;
    let started = Arc::new(AtomicUsize::new(0));
    let h = {
        let started = started.clone();
        handler(
            HandlerOptions::new("q").concurrency(1).batch(10),
            move |_doc, ctx| {
                let started = started.clone();
                Box::pin(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    // runs until shutdown cancels it, then finishes cleanly
                    ctx.cancellation_token().cancelled().await;
                    Ok(Outcome::complete())
                })
            },
        )
    };
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .shutdown_timeout(Duration::from_secs(6))
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "10 leased", || async {
        count(&db.client, "q", ACTIVE).await == 10
    })
    .await;
    stop.cancel();
    // long before the running handler is cancelled (at 6 s minus the
    // reserve), the nine buffered documents are due again
    eventually(Duration::from_secs(2), "the buffer given back", || async {
        count(&db.client, "q", PENDING).await == 9
    })
    .await;
    assert_eq!(count(&db.client, "q", ACTIVE).await, 1);
    assert!(!run.is_finished());
    run.await.unwrap().unwrap();
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "a buffered document ran after shutdown"
    );
    assert!(stats.total().released >= 9);
    // giving back burns no attempt
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fetchq_data.q__docs WHERE status = 1 AND attempts = 0",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 9);
}

#[tokio::test]
async fn a_document_waiting_too_long_for_a_slot_goes_back_for_others() {
    let db = TestDb::new().await;
    push(&db, 5).await;
    let gate = Arc::new(Semaphore::new(0));
    let h = {
        let gate = gate.clone();
        handler(
            // a 1 s lease: buffered documents wait 0.5 s at most
            HandlerOptions::new("q")
                .concurrency(1)
                .batch(5)
                .lease(Duration::from_secs(1)),
            move |_doc, _ctx| {
                let gate = gate.clone();
                Box::pin(async move {
                    gate.acquire().await.unwrap().forget();
                    Ok(Outcome::complete())
                })
            },
        )
    };
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(
        Duration::from_secs(20),
        "the four buffered given back",
        || async { stats.total().released == 4 },
    )
    .await;
    // another process takes them while the first handler is still stuck
    let other = db
        .client
        .pick(
            "q",
            &PickOptions::new().limit(10).lease(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(other.len(), 4);
    assert_eq!(count(&db.client, "q", ACTIVE).await, 5);
    gate.add_permits(100);
    eventually(Duration::from_secs(20), "the first completed", || async {
        stats.total().completed == 1
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(stats.total().lease_lost, 0);
}

#[tokio::test]
async fn a_buffered_document_killed_by_an_operator_never_runs() {
    let db = TestDb::new().await;
    push(&db, 3).await;
    let gate = Arc::new(Semaphore::new(0));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let h = {
        let (gate, seen) = (gate.clone(), seen.clone());
        handler(
            HandlerOptions::new("q")
                .concurrency(1)
                .batch(3)
                .lease(Duration::from_secs(2)),
            move |doc, _ctx| {
                let (gate, seen) = (gate.clone(), seen.clone());
                Box::pin(async move {
                    seen.lock().unwrap().push(doc.subject.clone());
                    gate.acquire().await.unwrap().forget();
                    Ok(Outcome::complete())
                })
            },
        )
    };
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    // leased, and the first one's handler started (it records its subject
    // after the pick: under load the count can be seen first)
    eventually(Duration::from_secs(20), "3 leased, 1 started", || async {
        count(&db.client, "q", ACTIVE).await == 3 && !seen.lock().unwrap().is_empty()
    })
    .await;
    let first = seen.lock().unwrap()[0].clone();
    let waiting = ["d000", "d001", "d002"]
        .into_iter()
        .find(|s| *s != first)
        .unwrap();
    // an operator kills a buffered document: its lease is gone
    db.client.force_kill("q", waiting).await.unwrap();
    // past half the lease the buffer is given back: the live one is
    // released, the killed one is not the runtime's any more
    eventually(Duration::from_secs(10), "the buffer given back", || async {
        stats.total().released == 1
    })
    .await;
    gate.add_permits(100);
    eventually(
        Duration::from_secs(20),
        "the other two completed",
        || async { stats.total().completed == 2 },
    )
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.contains(&waiting.to_owned()), "{seen:?}");
    assert_eq!(count(&db.client, "q", -1).await, 1);
}

#[tokio::test]
async fn batch_follows_concurrency_and_is_bounded() {
    let o = HandlerOptions::new("q").concurrency(32);
    assert_eq!(o.get_batch(), 32);
    assert_eq!(o.clone().batch(4).get_batch(), 4);
    assert!(o.clone().batch(fetchq_worker::MAX_BATCH).validate().is_ok());
    let err = o
        .batch(fetchq_worker::MAX_BATCH + 1)
        .validate()
        .unwrap_err();
    assert!(err.contains("at most"), "{err}");
}

#[tokio::test]
async fn register_with_adjusts_a_handlers_options_at_run_time() {
    let db = TestDb::new().await;
    push(&db, 10).await;
    let gate = Arc::new(Semaphore::new(0));
    let make = |gate: Arc<Semaphore>| {
        handler(HandlerOptions::new("q"), move |_doc, _ctx| {
            let gate = gate.clone();
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                Ok(Outcome::complete())
            })
        })
    };
    // the handler says concurrency 10; configuration says 1 at a time, 10 a pick
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .register_with(make(gate.clone()), |o| o.concurrency(1).batch(10));
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "10 leased, 1 running", || async {
        count(&db.client, "q", ACTIVE).await == 10
    })
    .await;
    gate.add_permits(100);
    eventually(Duration::from_secs(20), "all completed", || async {
        stats.total().completed == 10
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    // bad adjusted options fail run like bad handler options
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .register_with(make(gate), |o| o.concurrency(0));
    match rt.run().await {
        Err(fetchq_worker::WorkerError::Config(msg)) => {
            assert!(msg.contains("at least 1"), "{msg}")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn parallel_small_picks_from_two_runtimes_run_each_document_once() {
    let db = TestDb::new().await;
    push(&db, 400).await;
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut runs = Vec::new();
    let mut all_stats = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..2 {
        let (seen, running, most) = (seen.clone(), running.clone(), most.clone());
        // batch 1 under concurrency 8: up to 8 picks of one at once
        let h = handler(
            HandlerOptions::new("q").concurrency(8).batch(1),
            move |doc, _ctx| {
                let (seen, running, most) = (seen.clone(), running.clone(), most.clone());
                Box::pin(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    *seen.lock().unwrap().entry(doc.subject.clone()).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(Outcome::complete())
                })
            },
        );
        let rt = Runtime::new(db.pool.clone())
            .handle_signals(false)
            .register(h);
        stops.push(rt.shutdown_token());
        all_stats.push(rt.stats());
        runs.push(tokio::spawn(rt.run()));
    }
    eventually(Duration::from_secs(60), "all completed", || async {
        all_stats.iter().map(|s| s.total().completed).sum::<u64>() == 400
    })
    .await;
    for s in &stops {
        s.cancel();
    }
    for r in runs {
        r.await.unwrap().unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= 16);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 400);
    assert!(seen.values().all(|n| *n == 1), "a document ran twice");
    assert_eq!(count(&db.client, "q", 3).await, 400);
    assert_eq!(count(&db.client, "q", ACTIVE).await, 0);
}
