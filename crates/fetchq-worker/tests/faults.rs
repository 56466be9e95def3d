//! The runtime under faults: outcomes the database refuses, a queue dropped
//! under the workers, slow writes, shutdown deadlines, outages and killed
//! backends. Each test checks that shutdown ends within its deadline.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fetchq_core::{Client, NewDoc, Status};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use common::{count, error_logs, eventually, handler};

/// Asks for shutdown and checks that `run` returns within `limit`.
async fn shut_down_within(
    stop: &CancellationToken,
    run: tokio::task::JoinHandle<Result<(), fetchq_worker::WorkerError>>,
    limit: Duration,
) {
    let asked = Instant::now();
    stop.cancel();
    let ended = tokio::time::timeout(limit + Duration::from_secs(10), run).await;
    let took = asked.elapsed();
    let result = ended.unwrap_or_else(|_| panic!("shutdown did not end (waited {took:?})"));
    result.unwrap().unwrap();
    assert!(took <= limit, "shutdown took {took:?}, over {limit:?}");
}

#[tokio::test]
async fn a_refused_outcome_is_rejected_and_the_other_outcomes_are_written() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.queue_set_max_payload_size("q", 1000).await.unwrap();
    let poison = [
        "nul",
        "big",
        "nul_reject",
        "negative",
        "nul_kill",
        "overflow",
    ];
    let mut docs: Vec<NewDoc> = (0..40).map(|i| NewDoc::new(format!("ok{i}"))).collect();
    docs.extend(poison.iter().map(|s| NewDoc::new(*s)));
    c.push_many("q", &docs).await.unwrap();
    // the backoff of a document rejected for the 41st time overflows an interval
    // (unless the engine caps it: then this reject is simply written)
    c.queue_set_max_attempts("q", 100).await.unwrap();
    c.queue_set_retry_backoff(
        "q",
        Duration::from_secs(3 * 3600),
        Duration::from_secs(86_400),
        0.0,
    )
    .await
    .unwrap();
    sqlx::query("UPDATE fetchq_data.q__docs SET attempts = 40 WHERE subject = 'overflow'")
        .execute(&db.pool)
        .await
        .unwrap();
    let h = handler(HandlerOptions::new("q").concurrency(8), |doc, _ctx| {
        Box::pin(async move {
            Ok(match doc.subject.as_str() {
                "nul" => Outcome::complete().with_payload(json!({"s": "a\u{0}b"})),
                "big" => Outcome::reschedule_in(Duration::from_secs(60))
                    .with_payload(json!({"s": "x".repeat(5000)})),
                "nul_reject" => Outcome::reject("bad\u{0}byte"),
                "negative" => Outcome::migrate(-1),
                "nul_kill" => Outcome::kill().with_payload(json!({"s": "\u{0}"})),
                "overflow" => Outcome::reject("again"),
                _ => Outcome::complete(),
            })
        })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(Duration::from_secs(3))
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(
        Duration::from_secs(20),
        "the 40 good documents completed",
        || async { count(&c, "q", 3).await >= 40 },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the refused outcomes settled",
        || async { count(&c, "q", 2).await == 0 || stats.total().refused >= 5 },
    )
    .await;
    shut_down_within(&stop, run, Duration::from_secs(4)).await;
    for subject in ["nul", "big", "nul_reject", "negative", "nul_kill"] {
        let doc = c.get("q", subject).await.unwrap();
        assert_ne!(doc.status, Status::Active, "{subject} is not left active");
        assert_ne!(
            doc.status,
            Status::Completed,
            "{subject}'s refused outcome was not applied"
        );
        let logs = error_logs(&c, "q", subject).await;
        assert!(
            logs.iter().any(|m| m.contains("refused")),
            "{subject}: the refusal is in its error log: {logs:?}"
        );
    }
    assert_ne!(
        c.get("q", "nul").await.unwrap().payload,
        json!({"s": "a\u{0}b"})
    );
    assert!(stats.total().refused >= 5, "{:?}", stats.total());
    assert_eq!(count(&c, "q", 3).await, 40);
}

#[tokio::test]
async fn a_queue_dropped_under_the_workers_does_not_wedge_the_others() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    for q in ["gone", "kept"] {
        c.queue_create(q).await.unwrap();
    }
    c.push_many(
        "gone",
        &(0..5)
            .map(|i| NewDoc::new(format!("g{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let gone = handler(
        HandlerOptions::new("gone").concurrency(5),
        move |_doc, ctx| {
            let d = d.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if !d.swap(true, Ordering::SeqCst) {
                    ctx.client().queue_drop("gone").await.unwrap();
                }
                Ok(Outcome::complete())
            })
        },
    );
    let kept = handler(HandlerOptions::new("kept").concurrency(4), |_doc, _ctx| {
        Box::pin(async move { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .create_queues(false)
        .shutdown_timeout(Duration::from_secs(3))
        .register(gone)
        .register(kept);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "the queue dropped", || async {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // pushed after the drop: the outcomes of the dropped queue must not block these
    c.push_many(
        "kept",
        &(0..30)
            .map(|i| NewDoc::new(format!("k{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(15),
        "the other queue drained",
        || async { count(&c, "kept", 3).await == 30 },
    )
    .await;
    shut_down_within(&stop, run, Duration::from_secs(4)).await;
}

#[tokio::test]
async fn shutdown_lets_handlers_finish_then_releases_without_burning_attempts() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push_many("q", &[NewDoc::new("quick"), NewDoc::new("stuck")])
        .await
        .unwrap();
    let fired = Arc::new(Mutex::new(None::<Instant>));
    let f = fired.clone();
    let h = handler(HandlerOptions::new("q").concurrency(2), move |doc, ctx| {
        let f = f.clone();
        Box::pin(async move {
            let work = if doc.subject == "quick" { 800 } else { 60_000 };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(work)) => Ok(Outcome::complete()),
                _ = ctx.cancellation_token().cancelled() => {
                    *f.lock().unwrap() = Some(Instant::now());
                    // a cooperative handler gives up with an error
                    Err(HandlerError::new(format!("{} interrupted", doc.subject)))
                }
            }
        })
    });
    let grace = Duration::from_secs(3);
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(grace)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(5), "both picked", || async {
        stats.total().picked == 2
    })
    .await;
    let asked = Instant::now();
    shut_down_within(&stop, run, grace + Duration::from_millis(500)).await;
    let fired_after = fired.lock().unwrap().map(|t| t - asked);
    assert!(
        fired_after.is_some_and(|d| d >= Duration::from_secs(2)),
        "the token fired at the deadline, not when shutdown started: {fired_after:?}"
    );
    assert_eq!(c.get("q", "quick").await.unwrap().status, Status::Completed);
    let stuck = c.get("q", "stuck").await.unwrap();
    assert_eq!(
        (stuck.status, stuck.attempts),
        (Status::Pending, 0),
        "released, the attempt not burned"
    );
    assert!(
        error_logs(&c, "q", "stuck").await.is_empty(),
        "nothing logged against it"
    );
    let s = stats.total();
    assert_eq!((s.rejected, s.released, s.completed), (0, 1, 1), "{s:?}");
}

/// Completions of `queue` wait while the test holds advisory lock 4242.
async fn gate_completions(pool: &sqlx::PgPool, queue: &str) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION public.gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
         CREATE TRIGGER gate BEFORE UPDATE ON fetchq_data.{queue}__docs
         FOR EACH ROW WHEN (NEW.status = 3) EXECUTE FUNCTION public.gate();"
    ))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn slow_writes_hold_back_picking() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push_many(
        "q",
        &(0..300)
            .map(|i| NewDoc::new(format!("d{i:03}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    gate_completions(&db.pool, "q").await;
    let mut gate = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();
    let h = handler(HandlerOptions::new("q").concurrency(4), |_doc, _ctx| {
        Box::pin(async move { Ok(Outcome::complete()) })
    });
    // default bound: four places per slot (16), at least 64
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(Duration::from_secs(3))
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "some picked", || async {
        stats.total().picked >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let picked = stats.total().picked;
    assert_eq!(count(&c, "q", 3).await, 0, "writes are held");
    assert!(
        picked <= 4 + 64,
        "picked but unwritten: {picked}, over concurrency 4 + 64 pending outcomes"
    );
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "all completed", || async {
        count(&c, "q", 3).await == 300
    })
    .await;
    shut_down_within(&stop, run, Duration::from_secs(4)).await;
    assert_eq!(stats.total().completed, 300);
}

#[tokio::test]
async fn an_outcome_that_keeps_failing_stops_being_heartbeated() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    // completing "stuck" fails with a serialization failure (transient) forever
    sqlx::raw_sql(
        "CREATE FUNCTION public.fail() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'try again' USING ERRCODE = '40001'; END $$;
         CREATE TRIGGER fail BEFORE UPDATE ON fetchq_data.q__docs
         FOR EACH ROW WHEN (NEW.status = 3 AND NEW.subject = 'stuck') EXECUTE FUNCTION public.fail();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    c.push("q", &NewDoc::new("stuck")).await.unwrap();
    let h = handler(
        HandlerOptions::new("q")
            .concurrency(4)
            .lease(Duration::from_millis(800)),
        |_doc, _ctx| Box::pin(async move { Ok(Outcome::complete()) }),
    );
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(Some(Duration::from_millis(200)))
        .shutdown_timeout(Duration::from_secs(2))
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(5), "stuck picked", || async {
        stats.total().picked >= 1
    })
    .await;
    c.push_many(
        "q",
        &(0..20)
            .map(|i| NewDoc::new(format!("ok{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(20), "the others completed", || async {
        count(&c, "q", 3).await == 20
    })
    .await;
    // its lease ran out: maintenance gave it back and it was picked again
    eventually(
        Duration::from_secs(20),
        "stuck returned to the queue",
        || async { stats.total().picked >= 22 },
    )
    .await;
    shut_down_within(&stop, run, Duration::from_secs(3)).await;
    assert!(stats.total().lease_lost >= 1, "{:?}", stats.total());
}

/// A TCP proxy to the test server that can cut every connection and then
/// accept new ones without ever answering (an unreachable server).
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    cut: CancellationToken,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let cut = CancellationToken::new();
        let (d, k) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            let mut silent = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    silent.push(inbound); // hold it open, say nothing
                    continue;
                }
                let upstream = upstream.clone();
                let k = k.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = k.cancelled() => {}
                    }
                });
            }
        });
        Self { port, down, cut }
    }

    /// The server becomes unreachable: connections are cut, new ones hang.
    fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.cancel();
    }

    fn url(&self, db: &TestDb) -> String {
        let mut url: url_like::Url = db.url().parse().unwrap();
        url.port = self.port;
        url.to_string()
    }
}

/// Just enough URL handling to swap the host and port of a PostgreSQL URL.
mod url_like {
    pub struct Url {
        pub prefix: String,
        pub port: u16,
        pub rest: String,
    }
    impl std::str::FromStr for Url {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            // postgres://user[:pw]@host:port/db?params
            let at = s.find('@').ok_or("no @")?;
            let slash = s[at..].find('/').ok_or("no /")? + at;
            Ok(Url {
                prefix: s[..at].to_owned(),
                port: 0,
                rest: s[slash..].to_owned(),
            })
        }
    }
    impl std::fmt::Display for Url {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}@127.0.0.1:{}{}", self.prefix, self.port, self.rest)
        }
    }
}

fn upstream_of(db: &TestDb) -> String {
    let opts: sqlx::postgres::PgConnectOptions = db.url().parse().unwrap();
    format!("{}:{}", opts.get_host(), opts.get_port())
}

#[tokio::test]
async fn shutdown_ends_within_its_deadline_when_the_database_goes_down() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push_many(
        "q",
        &(0..200)
            .map(|i| NewDoc::new(format!("d{i:03}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let proxy = Proxy::start(upstream_of(&db)).await;
    let h = handler(HandlerOptions::new("q").concurrency(8), |_doc, _ctx| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Outcome::complete())
        })
    });
    let grace = Duration::from_secs(2);
    let rt = Runtime::new(proxy.url(&db))
        .handle_signals(false)
        .migrate(false)
        .acquire_timeout(Duration::from_millis(300))
        .shutdown_timeout(grace)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "work under way", || async {
        stats.total().completed >= 16
    })
    .await;
    proxy.go_down();
    tokio::time::sleep(Duration::from_millis(500)).await;
    shut_down_within(&stop, run, grace + Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_server_that_never_answers_fails_fast() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(upstream_of(&db)).await;
    proxy.go_down();
    let started = Instant::now();
    let err = Client::connect(&proxy.url(&db)).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "Client::connect waited {:?}",
        started.elapsed()
    );
    // the runtime keeps retrying its setup, and still stops at once
    let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
        Box::pin(async move { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new(proxy.url(&db))
        .handle_signals(false)
        .acquire_timeout(Duration::from_millis(200))
        .shutdown_timeout(Duration::from_secs(1))
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_secs(1)).await;
    shut_down_within(&stop, run, Duration::from_secs(1)).await;
}
