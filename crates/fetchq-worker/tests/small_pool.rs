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

/// Picks of queue `a` take 5 s each from now on (a trigger on the lease
/// update): they hold their connections that long, as picks on a stalled
/// queue would.
async fn slow_picks(pool: &sqlx::PgPool, queue: &str) {
    sqlx::raw_sql(&format!(
        "CREATE TABLE public.slow_picks (on_ boolean);
         CREATE FUNCTION public.slow_pick() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF EXISTS (SELECT 1 FROM public.slow_picks) THEN PERFORM pg_sleep(5); END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER slow_pick BEFORE UPDATE ON fetchq_data.{queue}__docs FOR EACH ROW
             WHEN (OLD.status = 1 AND NEW.status = 2) EXECUTE FUNCTION public.slow_pick();"
    ))
    .execute(pool)
    .await
    .unwrap();
}

/// Two handlers on queue `a` (versions 0 and 1), each with 32 slots and
/// picks of one, share a runtime pool of four connections with a handler on
/// queue `b`. When `a`'s picks stall, together they keep at most half the
/// pool: `b` goes on draining meanwhile (with a budget of half the pool per
/// handler, `a`'s four stalled picks held every connection and `b` moved
/// only when one of them ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_picks_of_two_handlers_leave_connections_for_a_third() {
    let db = TestDb::new().await;
    let c = &db.client;
    for q in ["a", "b"] {
        c.queue_create(q).await.unwrap();
    }
    let docs: Vec<NewDoc> = (0..4000)
        .map(|i| NewDoc::new(format!("a{i:05}")).version(i % 2))
        .collect();
    c.push_many("a", &docs).await.unwrap();
    let docs: Vec<NewDoc> = (0..4000).map(|i| NewDoc::new(format!("b{i:05}"))).collect();
    c.push_many("b", &docs).await.unwrap();
    slow_picks(&db.pool, "a").await;
    let quick = |doc: fetchq_worker::Doc<serde_json::Value>, _ctx| -> common::Fut {
        let _ = doc;
        Box::pin(async move { Ok(Outcome::complete()) })
    };
    let on_a = |v: i32| {
        HandlerOptions::new("a")
            .version(v)
            .named(format!("a{v}"))
            .concurrency(32)
            .batch(1)
    };
    let rt = Runtime::new(db.url())
        .max_connections(4)
        .handle_signals(false)
        .maintenance(None)
        .register(handler(on_a(0), quick))
        .register(handler(on_a(1), quick))
        .register(handler(
            HandlerOptions::new("b").named("b").concurrency(4).batch(1),
            quick,
        ));
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    let done = |name: &'static str| {
        let stats = stats.clone();
        move || stats.snapshot().get(name).map_or(0, |s| s.completed)
    };
    let (a0, a1, b) = (done("a0"), done("a1"), done("b"));
    eventually(Duration::from_secs(20), "every pool busy", || async {
        a0() >= 20 && a1() >= 20 && b() >= 20
    })
    .await;
    sqlx::query("INSERT INTO public.slow_picks VALUES (true)")
        .execute(&db.pool)
        .await
        .unwrap();
    // the picks of a already under way end; the next ones stall
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = b();
    eventually(
        Duration::from_secs(4),
        "b drains while a's picks are stalled",
        || async { b() >= before + 100 },
    )
    .await;
    sqlx::query("DELETE FROM public.slow_picks")
        .execute(&db.pool)
        .await
        .unwrap();
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(stats.total().lease_lost, 0);
}
