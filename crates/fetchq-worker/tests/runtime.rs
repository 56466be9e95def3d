//! The runtime in one process against a real PostgreSQL: draining, repetitive
//! tasks, heartbeats, max runtime, failures, migrations, wake-ups, shutdown.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::{Client, NewDoc, Status};
use fetchq_testing::TestDb;
use fetchq_worker::{
    Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime, WorkerError,
};
use serde_json::{Value, json};

use common::{eventually, handler};

fn runtime(db: &TestDb) -> Runtime {
    Runtime::new(db.pool.clone()).handle_signals(false)
}

async fn completed(client: &Client, queue: &str) -> i64 {
    client.metric_compute(queue).await.unwrap().completed
}

#[tokio::test]
async fn drains_a_queue_without_exceeding_its_concurrency() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push_many(
        "q",
        &(0..500)
            .map(|i| NewDoc::new(format!("d{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (f, p) = (in_flight.clone(), peak.clone());
    let h = handler(
        HandlerOptions::new("q").concurrency(4).batch(3),
        move |_doc, _ctx| {
            let (f, p) = (f.clone(), p.clone());
            Box::pin(async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                Ok(Outcome::complete())
            })
        },
    );
    let rt = runtime(&db).register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(30), "500 completed", || async {
        completed(&c, "q").await == 500
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(
        peak.load(Ordering::SeqCst) <= 4,
        "peak in flight {}",
        peak.load(Ordering::SeqCst)
    );
    let s = stats.total();
    assert_eq!((s.picked, s.completed, s.lease_lost), (500, 500, 0));
    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get_common("q").await.unwrap().status_counts(),
        c.metric_compute("q").await.unwrap()
    );
}

#[tokio::test]
async fn a_repetitive_task_runs_again_at_its_planned_time() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("ironman").payload(json!({"runs": 0})))
        .await
        .unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let h = handler(
        HandlerOptions::new("q").idle_poll(Duration::from_secs(10)),
        move |doc, _ctx| {
            s.lock().unwrap().push((Instant::now(), doc.iterations));
            let runs = doc.payload["runs"].as_i64().unwrap_or(0) + 1;
            Box::pin(async move {
                Ok(Outcome::reschedule_in(Duration::from_millis(300))
                    .with_payload(json!({"runs": runs})))
            })
        },
    );
    let rt = runtime(&db).register(h).maintenance(None);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "4 runs", || async {
        starts.lock().unwrap().len() >= 4
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let starts = starts.lock().unwrap().clone();
    for (i, pair) in starts.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(280),
            "run {i} came back after {gap:?}, before its time"
        );
        assert!(
            gap < Duration::from_millis(1500),
            "run {i} came back after {gap:?}: the planned time was missed"
        );
        assert_eq!(pair[1].1, pair[0].1 + 1, "iterations are counted");
    }
    let doc = c.get("q", "ironman").await.unwrap();
    assert!(doc.iterations >= 4 && doc.payload["runs"].as_i64().unwrap() >= 4);
}

#[tokio::test]
async fn heartbeats_keep_a_slow_handler_s_lease() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("slow")).await.unwrap();
    let h = handler(
        HandlerOptions::new("q").lease(Duration::from_millis(300)),
        |_doc, _ctx| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await; // five leases long
                Ok(Outcome::complete())
            })
        },
    );
    // maintenance runs every 100 ms: an expired lease would be rescued at once
    let rt = runtime(&db)
        .register(h)
        .maintenance(Some(Duration::from_millis(100)));
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "completed", || async {
        completed(&c, "q").await == 1
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let doc = c.get("q", "slow").await.unwrap();
    assert_eq!((doc.status, doc.iterations), (Status::Completed, 1));
    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get_common("q").await.unwrap().orphans,
        0,
        "the lease never expired"
    );
    assert_eq!(stats.total().lease_lost, 0);
}

#[tokio::test]
async fn a_handler_past_its_max_runtime_is_cancelled_and_rejected() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("hang")).await.unwrap();
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let seen = saw_cancel.clone();
    let opts = HandlerOptions::new("q").max_runtime(Some(Duration::from_millis(300)));
    let h = handler(opts, move |_doc, ctx| {
        let seen = seen.clone();
        Box::pin(async move {
            let token = ctx.cancellation_token().clone();
            // a detached watcher sees the cancellation even though this future is dropped
            tokio::spawn(async move {
                token.cancelled().await;
                seen.fetch_add(1, Ordering::SeqCst);
            });
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Outcome::complete())
        })
    });
    let rt = runtime(&db).register(h).maintenance(None);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "rejected", || async {
        stats.total().rejected == 1
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(stats.total().timed_out, 1);
    assert_eq!(
        saw_cancel.load(Ordering::SeqCst),
        1,
        "the handler's token fired"
    );
    let msg: String = sqlx::query_scalar("SELECT message FROM fetchq_data.q__logs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(msg.contains("max runtime"), "{msg}");
    assert_ne!(c.get("q", "hang").await.unwrap().status, Status::Completed);
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)] // only deserialized
struct Typed {
    n: u32,
}

struct TypedHandler;

#[async_trait]
impl Handler for TypedHandler {
    type Payload = Typed;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("q").named("typed")
    }
    async fn handle(&self, doc: Doc<Typed>, _ctx: Context) -> Result<Outcome, HandlerError> {
        match doc.subject.as_str() {
            "err" => {
                Err(HandlerError::new("upstream said no").with_details(json!({"status": 503})))
            }
            "parse" => Ok(Outcome::complete().with_payload(json!({"n": "x".parse::<u32>()?}))),
            "panic" => panic!("boom in {}", doc.subject),
            _ => Ok(Outcome::complete()),
        }
    }
}

#[tokio::test]
async fn errors_panics_and_bad_payloads_reject_the_document_not_the_process() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    for (subject, payload) in [
        ("ok", json!({"n": 1})),
        ("err", json!({"n": 1})),
        ("parse", json!({"n": 1})),
        ("panic", json!({"n": 1})),
        ("bad", json!({"n": "not a number"})),
    ] {
        c.push("q", &NewDoc::new(subject).payload(payload))
            .await
            .unwrap();
    }
    let rt = runtime(&db).register(TypedHandler).maintenance(None);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "all resolved", || async {
        stats.total().rejected + stats.total().completed == 5
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.snapshot()["typed"];
    assert_eq!((s.completed, s.rejected, s.failed), (1, 4, 4));
    let logs: Vec<(String, String, Option<Value>)> = sqlx::query_as(
        "SELECT subject::text, message, details FROM fetchq_data.q__logs ORDER BY subject",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let by = |s: &str| logs.iter().find(|l| l.0 == s).unwrap().clone();
    assert!(
        by("bad").1.contains("\"bad\"")
            && by("bad").1.contains("\"q\"")
            && by("bad").1.contains("invalid type"),
        "{:?}",
        by("bad")
    );
    assert_eq!(by("err").1, "upstream said no");
    assert_eq!(by("err").2, Some(json!({"status": 503})));
    assert!(by("parse").1.contains("invalid digit"));
    assert!(by("panic").1.contains("handler panicked: boom in panic"));
}

#[tokio::test]
async fn migration_handlers_move_documents_to_the_next_version() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..1000)
        .map(|i| NewDoc::new(format!("p{i}")).payload(json!({"name": format!("hero {i}")})))
        .collect();
    c.push_many("q", &docs).await.unwrap();
    let wrong = Arc::new(AtomicUsize::new(0));
    let (w0, w1) = (wrong.clone(), wrong.clone());
    let migrate = handler(
        HandlerOptions::new("q")
            .version(0)
            .migrate_to(1)
            .named("v0->v1")
            .concurrency(8),
        move |doc, _ctx| {
            if doc.version != 0 || doc.payload.get("name").is_none() {
                w0.fetch_add(1, Ordering::SeqCst);
            }
            let upgraded = json!({"first_name": doc.payload["name"]});
            Box::pin(async move { Ok(Outcome::upgrade().with_payload(upgraded)) })
        },
    );
    let v1 = handler(
        HandlerOptions::new("q")
            .version(1)
            .named("v1")
            .concurrency(8),
        move |doc, _ctx| {
            if doc.version != 1 || doc.payload.get("first_name").is_none() {
                w1.fetch_add(1, Ordering::SeqCst);
            }
            Box::pin(async move { Ok(Outcome::complete()) })
        },
    );
    let rt = runtime(&db).register(migrate).register(v1);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "1000 completed", || async {
        completed(&c, "q").await == 1000
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(
        wrong.load(Ordering::SeqCst),
        0,
        "a document reached the wrong version's handler"
    );
    let snap = stats.snapshot();
    assert_eq!(
        (snap["v0->v1"].migrated, snap["v1"].completed),
        (1000, 1000)
    );
    let versions: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT version FROM fetchq_data.q__docs")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(versions, [1]);
}

#[tokio::test]
async fn a_push_wakes_an_idle_worker_and_a_planned_document_starts_on_time() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    let started = Arc::new(Mutex::new(Vec::new()));
    let s = started.clone();
    // polling alone would take 30 s: only the notification or the planned time can start these
    let h = handler(
        HandlerOptions::new("q").idle_poll(Duration::from_secs(30)),
        move |doc, _ctx| {
            s.lock()
                .unwrap()
                .push((doc.subject.clone(), Instant::now()));
            Box::pin(async { Ok(Outcome::complete()) })
        },
    );
    let rt = runtime(&db).register(h).maintenance(None);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_millis(500)).await; // idle now

    let pushed = Instant::now();
    c.push("q", &NewDoc::new("now")).await.unwrap();
    eventually(Duration::from_secs(5), "woken", || async {
        !started.lock().unwrap().is_empty()
    })
    .await;
    let woke_after = started.lock().unwrap()[0].1 - pushed;
    assert!(
        woke_after < Duration::from_secs(2),
        "an idle worker started after {woke_after:?}"
    );

    let planned = Instant::now();
    c.push("q", &NewDoc::new("later").at(Duration::from_millis(700)))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "planned run", || async {
        started.lock().unwrap().len() == 2
    })
    .await;
    let ran_after = started.lock().unwrap()[1].1 - planned;
    assert!(
        ran_after >= Duration::from_millis(650) && ran_after < Duration::from_secs(2),
        "planned doc ran after {ran_after:?}"
    );
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_work_then_gives_back_the_rest() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push_many("q", &[NewDoc::new("quick"), NewDoc::new("stuck")])
        .await
        .unwrap();
    let h = handler(HandlerOptions::new("q").concurrency(2), |doc, _ctx| {
        Box::pin(async move {
            let work = if doc.subject == "quick" { 300 } else { 60_000 };
            tokio::time::sleep(Duration::from_millis(work)).await;
            Ok(Outcome::complete())
        })
    });
    let rt = runtime(&db)
        .register(h)
        .maintenance(None)
        .shutdown_timeout(Duration::from_millis(800));
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(5), "both picked", || async {
        stats.total().picked == 2
    })
    .await;
    let asked = Instant::now();
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        asked.elapsed()
    );
    assert_eq!(
        c.get("q", "quick").await.unwrap().status,
        Status::Completed,
        "in-flight work finished"
    );
    let stuck = c.get("q", "stuck").await.unwrap();
    assert_eq!(
        (stuck.status, stuck.attempts),
        (Status::Pending, 0),
        "unfinished work given back at once"
    );
    assert_eq!(stats.total().released, 1);
}

#[tokio::test]
async fn a_lost_lease_cancels_the_handler_and_discards_its_result() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("stolen")).await.unwrap();
    let pool = db.pool.clone();
    let h = handler(
        HandlerOptions::new("q").lease(Duration::from_millis(300)),
        move |_doc, ctx| {
            let pool = pool.clone();
            Box::pin(async move {
                // someone else takes the document over (as after an expired lease)
                sqlx::query("UPDATE fetchq_data.q__docs SET lease_token = gen_random_uuid() WHERE subject = 'stolen'")
                .execute(&pool)
                .await
                .unwrap();
                tokio::select! {
                    _ = ctx.cancellation_token().cancelled() => Ok(Outcome::complete().with_payload(json!({"stale": true}))),
                    _ = tokio::time::sleep(Duration::from_secs(10)) => Err(HandlerError::new("never cancelled")),
                }
            })
        },
    );
    let rt = runtime(&db).register(h).maintenance(None);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "lease lost", || async {
        stats.total().lease_lost == 1
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let doc = c.get("q", "stolen").await.unwrap();
    assert_eq!(
        doc.status,
        Status::Active,
        "the stale result was not written"
    );
    assert_ne!(doc.payload, json!({"stale": true}));
    assert_eq!(stats.total().completed, 0);
}

#[tokio::test]
async fn invalid_configuration_is_refused_before_starting() {
    let db = TestDb::new().await;
    let bad = handler(HandlerOptions::new("Bad Queue"), |_d, _c| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    assert!(matches!(
        runtime(&db).register(bad).run().await,
        Err(WorkerError::Config(_))
    ));
    let zero = handler(HandlerOptions::new("q").concurrency(0), |_d, _c| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    assert!(matches!(
        runtime(&db).register(zero).run().await,
        Err(WorkerError::Config(_))
    ));
    assert!(matches!(
        runtime(&db).run().await,
        Err(WorkerError::Config(_))
    ));
    let ok = handler(HandlerOptions::new("q"), |_d, _c| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    let rt = runtime(&db).register(ok);
    rt.shutdown_token().cancel();
    rt.run().await.unwrap();
}

/// Processes holding the maintenance leader lock in this database.
async fn leaders(pool: &sqlx::PgPool) -> i64 {
    // key 0x6665_7463_686d: classid = high 32 bits, objid = low 32 bits
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()
           AND l.classid = 26213 AND l.objid = 1952671853 AND l.objsubid = 1",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn exactly_one_process_leads_maintenance_and_leadership_moves() {
    let db = TestDb::new().await;
    let noop = || {
        handler(HandlerOptions::new("q"), |_d, _c| {
            Box::pin(async { Ok(Outcome::complete()) })
        })
    };
    let every = Some(Duration::from_millis(100));
    // two runtimes with their own pools behave like two processes
    let other = db.pool_on(&db.name, 10).await;
    let a = runtime(&db).register(noop()).maintenance(every);
    let b = Runtime::new(other)
        .handle_signals(false)
        .register(noop())
        .maintenance(every);
    let (stop_a, stop_b) = (a.shutdown_token(), b.shutdown_token());
    let run_a = tokio::spawn(a.run());
    eventually(Duration::from_secs(5), "a leader", || async {
        leaders(&db.pool).await == 1
    })
    .await;
    let run_b = tokio::spawn(b.run());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(leaders(&db.pool).await, 1, "never two leaders");

    // the leader stops: after its run returns its lock is gone, so the holder is B
    stop_a.cancel();
    run_a.await.unwrap().unwrap();
    eventually(Duration::from_secs(5), "leadership moved", || async {
        leaders(&db.pool).await == 1
    })
    .await;
    stop_b.cancel();
    run_b.await.unwrap().unwrap();
    assert_eq!(
        leaders(&db.pool).await,
        0,
        "the lock is released on shutdown"
    );
}

/// The maintenance leader rebuilds a queue's sparse primary key (growing
/// subjects, most documents deleted), and leaves it alone when told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_leader_rebuilds_a_sparse_key_unless_told_not_to() {
    let db = TestDb::new().await;
    db.sparse_queue("mailer", 40_000).await;
    let size = || async {
        sqlx::query_scalar::<_, i64>("SELECT pg_relation_size('fetchq_data.mailer__docs_pkey')")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    let before = size().await;
    let start = |reindex: bool| {
        let rt = runtime(&db)
            .maintenance(Some(Duration::from_millis(200)))
            .reindex(reindex)
            .register(handler(HandlerOptions::new("mailer"), |_doc, _ctx| {
                Box::pin(async { Ok(Outcome::complete()) })
            }));
        (rt.shutdown_token(), tokio::spawn(rt.run()))
    };
    // turned off: a leader that ran vacuum rounds leaves the key as it is
    let (stop, run) = start(false);
    eventually(Duration::from_secs(10), "the runtime leads", || async {
        leaders(&db.pool).await == 1
    })
    .await;
    // past the first look (5 s after leading starts), and a second vacuum
    tokio::time::sleep(Duration::from_secs(11)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(size().await, before, "reindex(false) rebuilt the key");
    let (stop, run) = start(true);
    eventually(
        Duration::from_secs(30),
        "the leader rebuilt mailer's primary key",
        || async { size().await * 5 < before },
    )
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
}

/// The maintenance leader vacuums a queue with many dead rows (in a task of
/// its own, so that a long VACUUM of a big queue never holds up its rounds).
#[tokio::test]
async fn the_maintenance_leader_vacuums_a_churned_queue() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("churn").await.unwrap();
    c.push_many(
        "churn",
        &(0..3000)
            .map(|i| {
                NewDoc::new(format!("d{i}"))
                    .at(fetchq_core::Schedule::after(Duration::from_secs(3600)))
            })
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let vacuums = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'churn__docs'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let before = vacuums().await;
    // only the leader may clean it up
    sqlx::query("ALTER TABLE fetchq_data.churn__docs SET (autovacuum_enabled = false)")
        .execute(&db.pool)
        .await
        .unwrap();
    db.churn("fetchq_data.churn__docs", 3).await;
    let h = handler(HandlerOptions::new("churn"), |_doc, _ctx| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    let rt = runtime(&db)
        .maintenance(Some(Duration::from_millis(200)))
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(
        Duration::from_secs(30),
        "the leader vacuumed churn",
        || async { vacuums().await > before },
    )
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
}
