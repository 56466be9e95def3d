//! The client and the runtime through a real PgBouncer (a private one per
//! test, started by fetchq-testing): transaction pooling with a server pool of
//! 2 so client connections really share server connections, with and without
//! a direct connection for LISTEN, session pooling, and PgBouncer killed and
//! restarted mid-drain. Skipped, loudly, when pgbouncer is not installed,
//! except under `CI=true`, where that fails.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fetchq_core::{Client, ClientOptions, NewDoc, PickOptions, Schedule};
use fetchq_testing::TestDb;
use fetchq_testing::pgbouncer::{BouncerOptions, PgBouncer, PoolMode};
use fetchq_worker::{HandlerOptions, Outcome, Runtime, WorkerError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use common::{eventually, handler};

/// The maintenance leader's advisory lock key, as `pg_locks` shows it.
const LEADER_CLASSID: i64 = 0x6665;
const LEADER_OBJID: i64 = 0x7463_686d;

fn transaction_mode() -> BouncerOptions {
    BouncerOptions::default()
}

fn session_mode(pool_size: u32) -> BouncerOptions {
    BouncerOptions {
        mode: PoolMode::Session,
        pool_size,
        ..BouncerOptions::default()
    }
}

async fn pooled_client(bouncer: &PgBouncer, connections: u32) -> Client {
    Client::connect_opts(
        &bouncer.url(),
        &ClientOptions::new()
            .max_connections(connections)
            .transaction_pooling(true),
    )
    .await
    .unwrap()
}

/// Runs `SELECT $1 + $2` 100 times in each of 8 tasks on a pool of 8 through
/// the bouncer; returns (right answers, failures, one failure's text).
async fn hammer(
    url: &str,
    cache: Option<usize>,
    in_transaction: bool,
    persistent: bool,
) -> (u32, u32, String) {
    let mut opts: PgConnectOptions = url.parse().unwrap();
    if let Some(c) = cache {
        opts = opts.statement_cache_capacity(c);
    }
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut bad, mut said) = (0, 0, String::new());
            for i in 0..100i64 {
                let q = sqlx::query_scalar::<_, i64>("SELECT $1::bigint + $2")
                    .bind(i)
                    .bind(t)
                    .persistent(persistent);
                let got = if in_transaction {
                    let mut tx = pool.begin().await.unwrap();
                    let got = q.fetch_one(&mut *tx).await;
                    if got.is_ok() {
                        tx.commit().await.unwrap();
                    }
                    got
                } else {
                    q.fetch_one(&pool).await
                };
                match got {
                    Ok(v) if v == i + t => ok += 1,
                    Ok(v) => {
                        bad += 1;
                        said = format!("wrong answer {v}");
                    }
                    Err(e) => {
                        bad += 1;
                        said = e.to_string();
                    }
                }
            }
            (ok, bad, said)
        }));
    }
    let (mut ok, mut bad, mut said) = (0, 0, String::new());
    for t in tasks {
        let (o, b, s) = t.await.unwrap();
        ok += o;
        bad += b;
        if !s.is_empty() {
            said = s;
        }
    }
    pool.close().await;
    (ok, bad, said)
}

/// Why `transaction_pooling` exists: what sqlx does through PgBouncer 1.18
/// in transaction mode. Named statements (cached or not) and unnamed ones
/// outside a transaction break; unnamed ones inside a transaction do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_unnamed_statements_inside_a_transaction_survive_transaction_pooling() {
    let db = TestDb::new().await;
    let Some(bouncer) = PgBouncer::start(&db.url(), &transaction_mode()) else {
        return;
    };
    let url = bouncer.url();
    for (what, cache, tx, persistent) in [
        ("sqlx defaults (cached named statements)", None, false, true),
        ("statement_cache_capacity(0)", Some(0), false, true),
        (
            "statement_cache_capacity(0) in a transaction",
            Some(0),
            true,
            true,
        ),
        ("unnamed, no transaction", None, false, false),
    ] {
        let (ok, bad, said) = hammer(&url, cache, tx, persistent).await;
        eprintln!("{what}: {ok} right, {bad} failed (last: {said})");
        assert!(
            bad > 0,
            "{what}: expected failures through transaction pooling, got {ok} right"
        );
    }
    let (ok, bad, said) = hammer(&url, None, true, false).await;
    assert_eq!((ok, bad), (800, 0), "unnamed in a transaction: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_calls_through_transaction_pooling() {
    let db = TestDb::new().await;
    let Some(bouncer) = PgBouncer::start(&db.url(), &transaction_mode()) else {
        return;
    };
    let client = pooled_client(&bouncer, 8).await;
    assert!(client.is_transaction_pooling());
    // the schema is there already: a no-op through the bouncer
    assert!(client.migrate().await.unwrap().applied.is_empty());
    assert_eq!(
        client.info().await.unwrap(),
        db.client.info().await.unwrap()
    );
    client.queue_create("q").await.unwrap();
    assert!(client.push("q", &NewDoc::new("one")).await.unwrap());
    assert_eq!(
        client
            .push_many(
                "q",
                &(0..50)
                    .map(|i| NewDoc::new(format!("m{i}")))
                    .collect::<Vec<_>>()
            )
            .await
            .unwrap(),
        50
    );
    // the caller's transaction: committed, and rolled back
    let mut tx = client.pool().begin().await.unwrap();
    client
        .push_with(&mut *tx, "q", &NewDoc::new("kept"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = client.pool().begin().await.unwrap();
    client
        .push_with(&mut *tx, "q", &NewDoc::new("rolled-back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(client.get("q", "kept").await.is_ok());
    assert!(client.get("q", "rolled-back").await.is_err());

    // pick, complete, reschedule from 8 tasks at once over 2 server connections
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            loop {
                let picked = client
                    .pick("q", &PickOptions::new().limit(3))
                    .await
                    .unwrap();
                if picked.is_empty() {
                    return done;
                }
                for (i, d) in picked.iter().enumerate() {
                    if i == 1 {
                        client
                            .reschedule(&d.lease, Schedule::after(Duration::from_secs(3600)), None)
                            .await
                            .unwrap();
                    } else {
                        client.complete(&d.lease, None).await.unwrap();
                    }
                    done += 1;
                }
            }
        }));
    }
    let mut resolved = 0;
    for t in tasks {
        resolved += t.await.unwrap();
    }
    assert_eq!(resolved, 52);
    // the truth, read directly
    let counts = db.client.metric_compute("q").await.unwrap();
    assert_eq!(counts.total, 52);
    assert_eq!(counts.completed + counts.planned, 52);
    assert!(counts.planned > 0 && counts.completed > 0, "{counts:?}");
    assert_eq!((counts.pending, counts.active), (0, 0));

    // completed-document retention (schema 20) through the bouncer: set,
    // then cleaned by the maintenance call
    client
        .queue_set_completed_retention("q", fetchq_core::Retention::AtOnce)
        .await
        .unwrap();
    assert_eq!(
        client.mnt_drop_completed("q", 1000).await.unwrap() as i64,
        counts.completed
    );
    let counts = db.client.metric_compute("q").await.unwrap();
    assert_eq!((counts.completed, counts.total), (0, counts.planned));

    // VACUUM cannot run in a transaction: the maintenance's vacuum of a
    // churned queue goes through the bouncer as a plain statement
    client.queue_create("churn").await.unwrap();
    client
        .push_many(
            "churn",
            &(0..1500)
                .map(|i| NewDoc::new(format!("c{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let picked = client
        .pick("churn", &PickOptions::new().limit(1500))
        .await
        .unwrap();
    let items: Vec<_> = picked.into_iter().map(|d| (d.lease, None)).collect();
    client.complete_many("churn", &items).await.unwrap();
    let mut vacuumed = Vec::new();
    let start = Instant::now();
    while !vacuumed.iter().any(|t: &String| t.contains("churn")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "churn never vacuumed: {vacuumed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        vacuumed = client.vacuum_hot_tables().await.unwrap();
    }
}

struct Runs(Mutex<HashMap<String, u32>>);

impl Runs {
    fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(HashMap::new())))
    }
    /// Counts a run of `subject`; returns how many it had before.
    fn add(&self, subject: &str) -> u32 {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(subject.to_owned()).or_insert(0);
        *n += 1;
        *n - 1
    }
    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
    fn subjects(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Three queues of `per_queue` documents, one handler each; every tenth
/// document is rescheduled at its first run, then completed.
async fn fill(client: &Client, per_queue: usize) {
    for q in ["q1", "q2", "q3"] {
        client.queue_create(q).await.unwrap();
        let docs: Vec<_> = (0..per_queue)
            .map(|i| NewDoc::new(format!("{q}-{i}")))
            .collect();
        for chunk in docs.chunks(500) {
            client.push_many(q, chunk).await.unwrap();
        }
    }
}

fn with_handlers(mut rt: Runtime, runs: &Arc<Runs>, lease: Duration) -> Runtime {
    for q in ["q1", "q2", "q3"] {
        let runs = runs.clone();
        rt = rt.register(handler(
            HandlerOptions::new(q).concurrency(4).batch(8).lease(lease),
            move |doc, _ctx| {
                let before = runs.add(&doc.subject);
                Box::pin(async move {
                    if before == 0 && doc.subject.ends_with('0') {
                        Ok(Outcome::reschedule_in(Duration::from_millis(20)))
                    } else {
                        Ok(Outcome::complete())
                    }
                })
            },
        ));
    }
    rt
}

async fn completed_everywhere(client: &Client) -> i64 {
    let mut n = 0;
    for q in ["q1", "q2", "q3"] {
        n += client.metric_compute(q).await.unwrap().completed;
    }
    n
}

async fn listening_backends(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// The idle poll of the "wake" queue: far longer than any test waits, so a
/// handler that starts soon after a push was woken by a notification.
const WAKE_IDLE_POLL: Duration = Duration::from_secs(600);

/// Drains 3 x 1000 documents through the bouncer, then measures how long a
/// pushed document waits for its handler when pools are idle
/// ([`WAKE_IDLE_POLL`]), and checks that a short idle poll finds one.
async fn drain_then_wake(listen: bool) -> Option<Duration> {
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(&db.url(), &transaction_mode())?;
    fill(&db.client, 1000).await;
    db.client.queue_create("wake").await.unwrap();
    db.client.queue_create("poll").await.unwrap();
    let runs = Runs::new();
    let polled = Runs::new();
    let (tx, mut woke) = tokio::sync::mpsc::unbounded_channel();
    let mut rt = Runtime::new(bouncer.url())
        .transaction_pooling(true)
        .max_connections(8)
        .handle_signals(false)
        .maintenance(Some(Duration::from_millis(300)))
        .shutdown_timeout(Duration::from_secs(5));
    if listen {
        rt = rt.listen_url(db.url());
    }
    let p = polled.clone();
    rt = with_handlers(rt, &runs, Duration::from_secs(30))
        .register(handler(
            HandlerOptions::new("wake").idle_poll(WAKE_IDLE_POLL),
            move |_doc, _ctx| {
                let _ = tx.send(Instant::now());
                Box::pin(async { Ok(Outcome::complete()) })
            },
        ))
        .register(handler(
            HandlerOptions::new("poll").idle_poll(Duration::from_millis(200)),
            move |doc, _ctx| {
                p.add(&doc.subject);
                Box::pin(async { Ok(Outcome::complete()) })
            },
        ));
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(120), "3000 completed", || async {
        completed_everywhere(&db.client).await == 3000
    })
    .await;
    assert_eq!(runs.subjects(), 3000);
    assert_eq!(
        runs.total(),
        3300,
        "each document ran once, every tenth twice"
    );
    assert_eq!(listening_backends(&db).await, i64::from(listen));
    // the pool of "wake" has found it empty and sleeps its idle poll
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pushed = Instant::now();
    db.client.push("wake", &NewDoc::new("now")).await.unwrap();
    let waited = if listen {
        let at = tokio::time::timeout(Duration::from_secs(60), woke.recv())
            .await
            .unwrap()
            .unwrap();
        Some(at - pushed)
    } else {
        // no LISTEN: only a poll finds it, not within a few seconds
        assert!(
            tokio::time::timeout(Duration::from_secs(3), woke.recv())
                .await
                .is_err()
        );
        None
    };
    // polling finds new documents, with or without notifications
    db.client.push("poll", &NewDoc::new("found")).await.unwrap();
    eventually(Duration::from_secs(30), "a polled document", || async {
        polled.total() == 1
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.total();
    assert_eq!(s.lease_lost, 0);
    assert_eq!(completed_everywhere(&db.client).await, 3000);
    waited.or(Some(Duration::ZERO))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runtime_drains_through_transaction_pooling_and_wakes_through_listen_url() {
    let Some(waited) = drain_then_wake(true).await else {
        return;
    };
    eprintln!("push -> handler start with listen_url: {waited:?} (idle poll {WAKE_IDLE_POLL:?})");
    // a notification, not the poll (generous for a loaded host)
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runtime_drains_through_transaction_pooling_without_listen_url_by_polling() {
    drain_then_wake(false).await;
}

/// Without a direct connection the leader holds its lock in an open
/// transaction through the bouncer: with two runtimes, one holder, and it
/// is that transaction (a session lock would stay on a server connection
/// any other client may get).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_maintenance_leader_through_transaction_pooling() {
    let db = TestDb::new().await;
    let Some(bouncer) = PgBouncer::start(
        &db.url(),
        &BouncerOptions {
            pool_size: 4,
            ..transaction_mode()
        },
    ) else {
        return;
    };
    db.client.queue_create("q1").await.unwrap();
    let runs = Runs::new();
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let rt = Runtime::new(bouncer.url())
            .transaction_pooling(true)
            .max_connections(4)
            .handle_signals(false)
            .maintenance(Some(Duration::from_millis(100)))
            .register(handler(HandlerOptions::new("q1"), {
                let runs = runs.clone();
                move |doc, _ctx| {
                    runs.add(&doc.subject);
                    Box::pin(async { Ok(Outcome::complete()) })
                }
            }));
        stops.push(rt.shutdown_token());
        handles.push(tokio::spawn(rt.run()));
    }
    let holders = || async {
        sqlx::query_as::<_, (i64, String, bool, i32)>(
            "SELECT count(*) OVER (), a.state, a.backend_xmin IS NULL, a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2",
        )
        .bind(LEADER_CLASSID)
        .bind(LEADER_OBJID)
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    eventually(Duration::from_secs(20), "a leader", || async {
        !holders().await.is_empty()
    })
    .await;
    // a few maintenance rounds later: still exactly one, idle in its transaction
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h = holders().await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].1, "idle in transaction", "{h:?}");
    // and it holds back no vacuum: no snapshot between statements
    assert!(h[0].2, "the leader's transaction holds an xmin: {h:?}");
    // and the work still flows
    db.client.push("q1", &NewDoc::new("x")).await.unwrap();
    eventually(Duration::from_secs(20), "x handled", || async {
        runs.total() == 1
    })
    .await;
    // stopped in the middle of a round (its jobs wait for this lock): the
    // leader still gives its lock back before the runtime returns
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE fetchq.jobs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "a round waiting for the jobs", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%mnt_job_run%')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    })
    .await;
    let h = holders().await;
    assert_eq!(h.len(), 1, "{h:?}");
    let leader_pid = h[0].3;
    for s in &stops {
        s.cancel();
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let h = holders().await;
    blocker.rollback().await.unwrap();
    assert!(h.is_empty(), "the lock outlived its runtime: {h:?}");
    // by a rollback, not a dropped link: the pooler keeps the server
    // connection (it closes one whose client left in a transaction)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alive: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)")
            .bind(leader_pid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        alive,
        "the leader's server connection was dropped, not given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_pooling_works_unchanged() {
    let db = TestDb::new().await;
    let Some(bouncer) = PgBouncer::start(&db.url(), &session_mode(30)) else {
        return;
    };
    // the plain client and runtime: no option
    let client = Client::connect(&bouncer.url()).await.unwrap();
    assert!(!client.is_transaction_pooling());
    fill(&client, 300).await;
    let picked = client
        .pick("q1", &PickOptions::new().limit(5))
        .await
        .unwrap();
    for d in &picked {
        client.complete(&d.lease, None).await.unwrap();
    }
    db.client.queue_create("wake").await.unwrap();
    let runs = Runs::new();
    let (tx, mut woke) = tokio::sync::mpsc::unbounded_channel();
    let rt = with_handlers(
        Runtime::new(bouncer.url())
            .max_connections(8)
            .handle_signals(false),
        &runs,
        Duration::from_secs(30),
    )
    .register(handler(
        HandlerOptions::new("wake").idle_poll(Duration::from_secs(30)),
        move |_doc, _ctx| {
            let _ = tx.send(Instant::now());
            Box::pin(async { Ok(Outcome::complete()) })
        },
    ));
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "900 completed", || async {
        completed_everywhere(&db.client).await == 900
    })
    .await;
    // LISTEN works through a session pooler
    eventually(Duration::from_secs(10), "a listener", || async {
        listening_backends(&db).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pushed = Instant::now();
    client.push("wake", &NewDoc::new("now")).await.unwrap();
    let at = tokio::time::timeout(Duration::from_secs(60), woke.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        at - pushed < Duration::from_secs(10),
        "woke after {:?}",
        at - pushed
    );
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(runs.subjects(), 900 - picked.len());
}

/// PgBouncer killed (every client and server connection cut) and restarted
/// mid-drain: the runtime recovers by itself and every document ends
/// completed, once (a completed document is never run again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_restarted_mid_drain() {
    let db = TestDb::new().await;
    let Some(mut bouncer) = PgBouncer::start(&db.url(), &transaction_mode()) else {
        return;
    };
    fill(&db.client, 700).await;
    let runs = Runs::new();
    // a client with transaction pooling on: the runtime takes the setting
    // from it (no `.transaction_pooling(true)` here)
    let client = pooled_client(&bouncer, 8).await;
    let rt = with_handlers(
        Runtime::new(client)
            .listen_url(db.url())
            .handle_signals(false)
            .maintenance(Some(Duration::from_millis(200))),
        &runs,
        // short: documents whose outcome died with the bouncer come back soon
        Duration::from_secs(3),
    );
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "some completed", || async {
        completed_everywhere(&db.client).await >= 500
    })
    .await;
    let before = completed_everywhere(&db.client).await;
    let bouncer = tokio::task::spawn_blocking(move || {
        bouncer.restart();
        bouncer
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(120), "2100 completed", || async {
        completed_everywhere(&db.client).await == 2100
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(before < 2100, "the restart came after the drain ({before})");
    eprintln!("PgBouncer restarted with {before} of 2100 completed");
    for q in ["q1", "q2", "q3"] {
        let c = db.client.metric_compute(q).await.unwrap();
        assert_eq!((c.total, c.completed), (700, 700), "{q}: {c:?}");
    }
    // runs: 2100 + 210 reschedules, plus those whose outcome the kill lost
    // (at most what was in flight then: 3 pools x (4 running + 8 picked ahead))
    let extra = runs.total() - 2310;
    eprintln!(
        "runs after the restart: {} ({extra} again after a lost outcome)",
        runs.total()
    );
    assert!(runs.total() >= 2310 && extra <= 36, "{} runs", runs.total());
    assert_eq!(runs.subjects(), 2100);
    let s = stats.total();
    assert!(s.completed + s.lease_lost >= 2100, "{s:?}");
    drop(bouncer);
}

#[tokio::test]
async fn an_invalid_listen_url_is_a_config_error() {
    let db = TestDb::new().await;
    let err = Runtime::new(db.pool.clone())
        .transaction_pooling(true)
        .listen_url("not a url")
        .handle_signals(false)
        .register(handler(HandlerOptions::new("q1"), |_d, _c| {
            Box::pin(async { Ok(Outcome::complete()) })
        }))
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, WorkerError::Config(ref m) if m.contains("listen_url")),
        "{err}"
    );
}
