//! What an idle worker costs the database: pools with nothing to do must make
//! about one statement per `idle_poll`, not spin, whether their queue is empty, paused,
//! holds only documents of another version, or a due document row-locked by
//! a long transaction.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fetchq_core::{Client, NewDoc};
use fetchq_testing::TestDb;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;

struct Counting {
    options: HandlerOptions,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl Handler for Counting {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        self.options.clone()
    }
    async fn handle(&self, _doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::complete())
    }
}

/// Committed transactions of the database, as the statistics have them.
async fn xact_commit(db: &TestDb) -> i64 {
    let pool = db.pool_on(&db.name, 1).await;
    let n: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn idle_pools_poll_once_per_idle_poll_instead_of_spinning() {
    let db = TestDb::new().await;
    let idle_poll = Duration::from_secs(1);
    let idle_for = Duration::from_secs(10);
    {
        // set up through a pool of its own, closed before counting
        let setup = Client::new(db.pool_on(&db.name, 2).await);
        for q in ["empty", "paused", "other", "locked"] {
            setup.queue_create(q).await.unwrap();
        }
        // paused, with a pending and a due planned document
        setup.push("paused", &NewDoc::new("p")).await.unwrap();
        setup
            .push(
                "paused",
                &NewDoc::new("planned").at(Duration::from_millis(200)),
            )
            .await
            .unwrap();
        setup.queue_pause("paused").await.unwrap();
        // only version 1: pending, due planned, and planned later
        setup
            .push("other", &NewDoc::new("p").version(1))
            .await
            .unwrap();
        setup
            .push(
                "other",
                &NewDoc::new("soon")
                    .version(1)
                    .at(Duration::from_millis(200)),
            )
            .await
            .unwrap();
        setup
            .push(
                "other",
                &NewDoc::new("later").version(1).at(Duration::from_secs(4)),
            )
            .await
            .unwrap();
        setup
            .push(
                "locked",
                &NewDoc::new("held").at(Duration::from_millis(200)),
            )
            .await
            .unwrap();
        setup.pool().close().await;
    }
    // a long transaction holds the due planned document of "locked"
    let holder_pool = db.pool_on(&db.name, 1).await;
    let mut holder = holder_pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq_data.locked__docs WHERE subject = 'held' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // everything planned is due now

    let calls = Arc::new(AtomicUsize::new(0));
    let queues = ["empty", "paused", "other", "locked"];
    let pool = db.pool_on(&db.name, 10).await;
    let before = xact_commit(&db).await;
    let mut rt = Runtime::new(pool.clone())
        .handle_signals(false)
        .migrate(false)
        .create_queues(false)
        .maintenance(None);
    for q in queues {
        rt = rt.register(Counting {
            // batch 1 under concurrency 10: a busy pool would pick in
            // parallel, an idle one must not
            options: HandlerOptions::new(q).idle_poll(idle_poll).batch(1),
            calls: calls.clone(),
        });
    }
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(idle_for).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let connections = i64::from(pool.size());
    pool.close().await;
    holder.rollback().await.unwrap();
    holder_pool.close().await;
    // backends flush their statistics when they exit
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spent = xact_commit(&db).await - before;

    // each idle round is ONE statement: the pick, which also says when the
    // next planned document is due when it leased nothing (a separate
    // next-due look-up made it two: about 2 * pools * rounds, which this bound
    // refuses); each connection prepares each queue's pick once (a
    // transaction of its own); plus start-up, shutdown and the statistics
    // reads of this test, autovacuum's analyze of the new tables, and a pick
    // repeated once after it promoted documents
    let pools = queues.len() as i64;
    let rounds = (idle_for.as_secs_f64() / idle_poll.as_secs_f64()).ceil() as i64 + 2;
    let bound = pools * rounds + connections * pools + 60;
    eprintln!(
        "idle for {idle_for:?} with {pools} pools (idle_poll {idle_poll:?}, {connections} connections): \
         {spent} transactions (bound {bound}), {:.2} per pool per idle_poll, all included",
        spent as f64 / (pools as f64 * idle_for.as_secs_f64() / idle_poll.as_secs_f64())
    );
    assert!(
        spent <= bound,
        "{spent} transactions in {idle_for:?} from {} idle pools: they spin (bound {bound})",
        queues.len()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing was pickable");
}
