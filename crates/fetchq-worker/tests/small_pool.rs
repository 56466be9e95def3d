//! Tiny pools: many slots picking one document at a time over one or two
//! connections still drain the queue, and the heartbeat still keeps the
//! leases of slow handlers (none is lost, nothing comes back as an orphan).

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::time::Duration;

use fetchq_core::{Client, NewDoc};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{count, eventually, handler};

const DOCS: usize = 120;

async fn push(c: &Client) {
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..DOCS).map(|i| NewDoc::new(format!("d{i:03}"))).collect();
    c.push_many("q", &docs).await.unwrap();
}

/// Concurrency 32, picks of one, a lease of 2 s, and every tenth handler
/// outliving its lease (3 s): drains, heartbeats, loses nothing.
async fn drains(rt: Runtime, c: &Client) {
    let h = handler(
        HandlerOptions::new("q")
            .concurrency(32)
            .batch(1)
            .lease(Duration::from_secs(2)),
        |doc, _ctx| {
            Box::pin(async move {
                let slow = doc.subject.ends_with('0');
                let ms = if slow { 3000 } else { 20 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Outcome::complete())
            })
        },
    );
    let rt = rt.handle_signals(false).maintenance(None).register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "all completed", || async {
        stats.total().completed == DOCS as u64
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.total();
    assert_eq!((s.lease_lost, s.rejected, s.timed_out), (0, 0, 0), "{s:?}");
    assert_eq!(count(c, "q", 3).await, DOCS as i64);
    // no lease ran out: nothing was picked twice
    assert_eq!(s.picked, DOCS as u64, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_pool_of_two_connections_drains_and_heartbeats() {
    let db = TestDb::new().await;
    push(&db.client).await;
    drains(Runtime::new(db.url()).max_connections(2), &db.client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_pool_of_two_connections_drains_and_heartbeats() {
    let db = TestDb::with_pool_size(2).await;
    push(&db.client).await;
    drains(Runtime::new(db.pool.clone()), &db.client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_pool_of_one_connection_drains_and_heartbeats() {
    let db = TestDb::with_pool_size(1).await;
    push(&db.client).await;
    drains(Runtime::new(db.pool.clone()), &db.client).await;
}
