//! Fault injection: real worker processes (`fetchq-fault-worker`) under poison
//! outcomes, dropped and paused queues, a crashed PostgreSQL, killed backends,
//! long-open transactions and a full connection pool.
//!
//! Every test ends with [`check_invariants`], which asserts the same things:
//! - **no document lost**: every pushed subject is still in the queue (unless
//!   the test dropped it);
//! - **none leased twice at once**: no two handler runs of one subject overlap
//!   in time, and no lease (subject and token) was handed to two runs (one
//!   pick gives one token to all the documents it leases);
//! - **no completion applied twice**: a document's `iterations` never exceed
//!   the handler runs it had;
//! - **none stuck active**: no document is active with its lease expired
//!   (maintenance ran in the workers), and after a graceful shutdown of every
//!   worker nothing is active at all;
//! - **counters equal a real count**: `metric_get_common` (after a pack) equals
//!   `metric_compute`;
//! - **shutdown within its deadline**: each worker exits with code 0 within its
//!   `shutdown_timeout` plus a margin after SIGTERM.
//!
//! Handler runs are recorded by the workers in local files (start and end,
//! with the lease token and the time), loaded into table `fault_runs` of the
//! test database for the checks. A test collects the violations it finds on
//! the way and the checker panics with all of them, each naming its invariant.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fetchq_core::{Client, NewDoc, Schedule};
use fetchq_testing::TestDb;
use serde_json::{Value, json};
use sqlx::PgPool;

use common::{RunRecord, read_runs};

const QUEUE: &str = "faults";
const DOCS: &str = "fetchq_data.faults__docs";
/// Slack on top of a worker's shutdown_timeout before its exit counts as late.
const EXIT_MARGIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- harness

/// A private directory for the run files of one test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "fetchq-faults-{name}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A running fault worker.
struct Worker {
    child: Child,
    grace: Duration,
    stopped: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Worker processes of one test plus the violations found so far.
struct Run {
    url: String,
    scratch: Scratch,
    workers: Vec<Worker>,
    violations: Vec<String>,
}

impl Run {
    fn new(name: &str, url: String) -> Self {
        Self {
            url,
            scratch: Scratch::new(name),
            workers: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Starts a worker; `env` overrides the defaults below.
    fn spawn(&mut self, env: &[(&str, &str)]) {
        let n = self.workers.len();
        let runs = self.scratch.0.join(format!("runs-{n}.jsonl"));
        let mut settings: HashMap<&str, String> = HashMap::from([
            ("FQ_QUEUE", QUEUE.to_owned()),
            ("FQ_CONCURRENCY", "4".to_owned()),
            ("FQ_LEASE_MS", "10000".to_owned()),
            ("FQ_GRACE_MS", "5000".to_owned()),
            ("FQ_MAINTENANCE_MS", "200".to_owned()),
        ]);
        for (k, v) in env {
            settings.insert(k, (*v).to_owned());
        }
        let grace = Duration::from_millis(settings["FQ_GRACE_MS"].parse().unwrap());
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fetchq-fault-worker"));
        cmd.env(
            "DATABASE_URL",
            format!("{}{sep}application_name=fetchq-fault-worker", self.url),
        )
        .env("FQ_RUNS_FILE", &runs)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in &settings {
            cmd.env(k, v);
        }
        self.workers.push(Worker {
            child: cmd.spawn().unwrap(),
            grace,
            stopped: false,
        });
    }

    fn violation(&mut self, invariant: &str, what: impl Into<String>) {
        let what = what.into();
        eprintln!("VIOLATION [{invariant}]: {what}");
        self.violations.push(format!("[{invariant}] {what}"));
    }

    /// SIGTERM to every worker, then waits for each: it must exit with code 0
    /// within its shutdown_timeout + EXIT_MARGIN (else it is SIGKILLed and the
    /// violation recorded).
    async fn stop_all(&mut self) {
        for w in self.workers.iter().filter(|w| !w.stopped) {
            let _ = Command::new("kill")
                .args(["-TERM", &w.child.id().to_string()])
                .status();
        }
        let asked = Instant::now();
        let mut late = Vec::new();
        for (i, w) in self
            .workers
            .iter_mut()
            .enumerate()
            .filter(|(_, w)| !w.stopped)
        {
            let deadline = w.grace + EXIT_MARGIN;
            loop {
                if let Some(status) = w.child.try_wait().unwrap() {
                    w.stopped = true;
                    if status.code() != Some(0) {
                        late.push(format!(
                            "worker {i} exited with {status} after SIGTERM (expected 0)"
                        ));
                    }
                    break;
                }
                if asked.elapsed() > deadline {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    w.stopped = true;
                    late.push(format!(
                        "worker {i} did not exit within shutdown_timeout {:?} + {EXIT_MARGIN:?} after SIGTERM (killed)",
                        w.grace
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for l in late {
            self.violation("shutdown within its deadline", l);
        }
    }

    fn all_exited_cleanly(&self) -> bool {
        !self
            .violations
            .iter()
            .any(|v| v.starts_with("[shutdown within its deadline]"))
    }

    /// Every run recorded so far by the workers (read from their files).
    fn runs(&self) -> Vec<RunRecord> {
        read_runs(&self.scratch.0)
    }

    /// Waits until `n` runs have started, at most `within`.
    async fn wait_started(&self, n: usize, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.runs().len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Polls `sql` until it returns at least `target`; false after `within`.
async fn reached(pool: &PgPool, sql: &str, target: i64, within: Duration) -> bool {
    let start = Instant::now();
    loop {
        if let Ok(n) = sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await
            && n >= target
        {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn subjects(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn push_all(client: &Client, subjects: &[String], payload: Value) {
    let docs: Vec<NewDoc> = subjects
        .iter()
        .map(|s| NewDoc::new(s.clone()).payload(payload.clone()))
        .collect();
    client.push_many(QUEUE, &docs).await.unwrap();
}

/// What the checker may skip.
#[derive(Default, Clone, Copy)]
struct Check {
    /// The queue no longer exists (dropped by the test): skip the queue checks.
    queue_gone: bool,
}

/// The shared end-of-test checker: stops nothing, reads everything. Panics
/// with every violation found (the run's own plus these), each naming the
/// invariant it broke.
async fn check_invariants(
    pool: &PgPool,
    client: &Client,
    run: &mut Run,
    expected: &[String],
    check: Check,
) {
    // the runs, into a table of the test database
    let runs = run.runs();
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS fault_runs;
         CREATE TABLE fault_runs (subject text NOT NULL, token text NOT NULL, pid bigint NOT NULL,
             started timestamptz NOT NULL, ended timestamptz, outcome text)",
    )
    .execute(pool)
    .await
    .unwrap();
    let to_ts = |us: i64| chrono::DateTime::from_timestamp_micros(us).unwrap();
    sqlx::query(
        "INSERT INTO fault_runs SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[],
             $4::timestamptz[], $5::timestamptz[], $6::text[])",
    )
    .bind(runs.iter().map(|r| r.subject.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.token.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.pid).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| to_ts(r.started)).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.ended.map(to_ts)).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>())
    .execute(pool)
    .await
    .unwrap();
    eprintln!("check: {} handler runs recorded", runs.len());

    // none leased twice at once
    let overlaps: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT a.subject, a.token || ' (pid ' || a.pid || ', ' || a.started || ' .. ' || coalesce(a.ended::text, 'never') || ')',
                b.token || ' (pid ' || b.pid || ', ' || b.started || ' .. ' || coalesce(b.ended::text, 'never') || ')'
         FROM fault_runs a JOIN fault_runs b ON a.subject = b.subject AND a.token < b.token
         WHERE a.started < coalesce(b.ended, 'infinity') AND b.started < coalesce(a.ended, 'infinity')
         ORDER BY 1 LIMIT 5",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    if !overlaps.is_empty() {
        let n = scalar(
            pool,
            "SELECT count(DISTINCT a.subject) FROM fault_runs a JOIN fault_runs b
             ON a.subject = b.subject AND a.token < b.token
             WHERE a.started < coalesce(b.ended, 'infinity') AND b.started < coalesce(a.ended, 'infinity')",
        )
        .await;
        run.violation(
            "none leased twice at once",
            format!("{n} subjects had two handler runs at the same time, e.g. {overlaps:?}"),
        );
    }
    let reused = scalar(
        pool,
        "SELECT count(*) FROM (SELECT 1 FROM fault_runs GROUP BY subject, token HAVING count(*) > 1) t",
    )
    .await;
    if reused > 0 {
        run.violation(
            "none leased twice at once",
            format!("{reused} leases (subject and token) were handed to more than one handler run"),
        );
    }
    let unended = scalar(pool, "SELECT count(*) FROM fault_runs WHERE ended IS NULL").await;
    if unended > 0 && run.all_exited_cleanly() {
        run.violation(
            "shutdown within its deadline",
            format!("{unended} handler runs never ended although every worker exited cleanly"),
        );
    }

    if !check.queue_gone {
        // no document lost
        let lost: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT s FROM unnest($1::text[]) AS s WHERE NOT EXISTS (SELECT 1 FROM {DOCS} d WHERE d.subject = s) ORDER BY 1"
        ))
        .bind(expected)
        .fetch_all(pool)
        .await
        .unwrap();
        if !lost.is_empty() {
            run.violation(
                "no document lost",
                format!(
                    "{} pushed documents are gone: {:?}",
                    lost.len(),
                    &lost[..lost.len().min(10)]
                ),
            );
        }

        // no completion applied twice
        let twice: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT d.subject::text, d.iterations, (SELECT count(*) FROM fault_runs r WHERE r.subject = d.subject)
             FROM {DOCS} d
             WHERE d.iterations > (SELECT count(*) FROM fault_runs r WHERE r.subject = d.subject)
             ORDER BY 1 LIMIT 10"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        if !twice.is_empty() {
            run.violation(
                "no completion applied twice",
                format!("documents resolved more often than handled (subject, iterations, runs): {twice:?}"),
            );
        }

        // none stuck active past its lease
        let stuck = scalar(
            pool,
            &format!("SELECT count(*) FROM {DOCS} WHERE status = 2 AND next_iteration < now() - interval '3 seconds'"),
        )
        .await;
        if stuck > 0 {
            run.violation(
                "none stuck active past its lease",
                format!("{stuck} documents are active with a lease that expired over 3 s ago"),
            );
        }
        let active = scalar(
            pool,
            &format!("SELECT count(*) FROM {DOCS} WHERE status = 2"),
        )
        .await;
        if active > 0 && run.all_exited_cleanly() {
            run.violation(
                "none stuck active past its lease",
                format!("{active} documents still active after every worker shut down gracefully (not given back)"),
            );
        }

        // counters equal a real count
        match client.metric_log_pack().await {
            Ok(_) => {
                let counters = client.metric_get_common(QUEUE).await.unwrap();
                let real = client.metric_compute(QUEUE).await.unwrap();
                if counters.status_counts() != real {
                    run.violation(
                        "counters equal a real count",
                        format!(
                            "metric_get_common {:?} != metric_compute {real:?}",
                            counters.status_counts()
                        ),
                    );
                }
            }
            Err(e) => run.violation(
                "counters equal a real count",
                format!("metric_log_pack failed: {e}"),
            ),
        }
    }

    let summary = status_summary(pool, check).await;
    eprintln!("check: final statuses {summary}");
    if !run.violations.is_empty() {
        panic!(
            "{} invariant violation(s):\n  {}\nfinal statuses: {summary}",
            run.violations.len(),
            run.violations.join("\n  ")
        );
    }
}

async fn status_summary(pool: &PgPool, check: Check) -> String {
    if check.queue_gone {
        return "(queue dropped)".into();
    }
    let rows: Vec<(i32, i64)> = sqlx::query_as(&format!(
        "SELECT status, count(*) FROM {DOCS} GROUP BY status ORDER BY status"
    ))
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    format!("{rows:?}")
}

/// Transactions the database ran during `window` (plus the 1.5 s it takes
/// backends to report their statistics): what an idle worker costs.
async fn idle_transactions(pool: &PgPool, window: Duration) -> i64 {
    let xacts = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()";
    let before = scalar(pool, xacts).await;
    tokio::time::sleep(window).await;
    // backends report their statistics at most once a second
    tokio::time::sleep(Duration::from_millis(1500)).await;
    scalar(pool, xacts).await - before
}

const COMPLETED: &str = "SELECT count(*) FROM fetchq_data.faults__docs WHERE status = 3";

async fn completed_of(pool: &PgPool, subjects: &[String]) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {DOCS} WHERE status = 3 AND subject = ANY ($1)"
    ))
    .bind(subjects)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn wait_completed(pool: &PgPool, subjects: &[String], within: Duration) -> bool {
    let start = Instant::now();
    loop {
        if completed_of(pool, subjects).await >= subjects.len() as i64 {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- scenarios

/// Poison outcomes of every kind (a `\u0000` payload on complete, reschedule
/// and kill; a payload over the queue's max size on the same; a reject with a
/// NUL in its message; a migrate to version -1; a reject whose backoff
/// overflows an interval) mixed with good documents: the good ones are all
/// completed, the poison ones end rejected, dead or released (never active,
/// never completed), the worker keeps going and shuts down in time.
#[tokio::test]
async fn poison_outcomes_do_not_wedge_the_worker() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create(QUEUE).await.unwrap();
    client
        .queue_set_max_payload_size(QUEUE, 1024)
        .await
        .unwrap();
    client.queue_set_max_attempts(QUEUE, 100).await.unwrap();
    let poisons: Vec<(&str, Value)> = vec![
        (
            "p-complete-nul",
            json!({"outcome": "complete", "poison": "nul"}),
        ),
        (
            "p-reschedule-nul",
            json!({"outcome": "reschedule", "poison": "nul"}),
        ),
        ("p-kill-nul", json!({"outcome": "kill", "poison": "nul"})),
        (
            "p-complete-big",
            json!({"outcome": "complete", "poison": "big"}),
        ),
        (
            "p-reschedule-big",
            json!({"outcome": "reschedule", "poison": "big"}),
        ),
        ("p-kill-big", json!({"outcome": "kill", "poison": "big"})),
        (
            "p-migrate-nul",
            json!({"outcome": "migrate", "to_version": 1, "poison": "nul"}),
        ),
        (
            "p-reject-nul",
            json!({"outcome": "reject", "poison": "nul"}),
        ),
        (
            "p-migrate-neg",
            json!({"outcome": "migrate", "to_version": -1}),
        ),
        ("p-reject-overflow", json!({"outcome": "reject"})),
    ];
    // good documents first in line, poison ones interleaved by priority
    let good = subjects("good", 40);
    let mut docs: Vec<NewDoc> = Vec::new();
    for (i, s) in good.iter().enumerate() {
        docs.push(NewDoc::new(s.clone()).priority(if i < 10 { 10 } else { 0 }));
    }
    for (s, p) in &poisons {
        docs.push(NewDoc::new(*s).priority(5).payload(p.clone()));
    }
    client.push_many(QUEUE, &docs).await.unwrap();
    // the backoff of this one overflows: base 3 h * 2^(attempts-1) at 40 attempts
    client
        .queue_set_retry_backoff(
            QUEUE,
            Duration::from_secs(3 * 3600),
            Duration::from_secs(3 * 3600 * 2),
            0.0,
        )
        .await
        .unwrap();
    sqlx::query(&format!(
        "UPDATE {DOCS} SET attempts = 40 WHERE subject = 'p-reject-overflow'"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    let expected: Vec<String> = docs.iter().map(|d| d.subject().to_owned()).collect();

    let mut run = Run::new("poison", db.url());
    run.spawn(&[("FQ_CONCURRENCY", "4"), ("FQ_GRACE_MS", "5000")]);
    if !wait_completed(&db.pool, &good, Duration::from_secs(40)).await {
        let done = completed_of(&db.pool, &good).await;
        run.violation(
            "liveness",
            format!("only {done} of {} good documents completed within 40 s: a poison outcome wedged the worker", good.len()),
        );
    }
    // every poison document was handled at least once and is settled: not
    // active, not completed with its poison
    let poison_subjects: Vec<String> = poisons.iter().map(|(s, _)| (*s).to_owned()).collect();
    let started: std::collections::HashSet<String> =
        run.runs().into_iter().map(|r| r.subject).collect();
    let never: Vec<&String> = poison_subjects
        .iter()
        .filter(|s| !started.contains(*s))
        .collect();
    if !never.is_empty() {
        run.violation(
            "liveness",
            format!("poison documents never handled: {never:?}"),
        );
    }
    // give the outcome writer a moment to settle the last outcomes
    tokio::time::sleep(Duration::from_secs(1)).await;
    let unsettled: Vec<(String, i32)> = sqlx::query_as(&format!(
        "SELECT subject::text, status FROM {DOCS} WHERE subject = ANY ($1) AND status NOT IN (-1, 0, 1) ORDER BY 1"
    ))
    .bind(&poison_subjects)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    if !unsettled.is_empty() {
        run.violation(
            "poison ends rejected, dead or released",
            format!("poison documents still active or completed (subject, status): {unsettled:?}"),
        );
    }
    let with_nul = scalar(
        &db.pool,
        &format!("SELECT count(*) FROM {DOCS} WHERE payload::text LIKE '%\\u0000%'"),
    )
    .await;
    assert_eq!(with_nul, 0, "a NUL payload was stored");
    run.stop_all().await;
    check_invariants(&db.pool, client, &mut run, &expected, Check::default()).await;
}

/// The queue is dropped while the worker is busy on it: the handlers finish
/// against a queue that is gone, and the worker still shuts down in time
/// (its outcome writer must not retry those outcomes forever). The queue is
/// then created again: a new worker handles its new documents.
#[tokio::test]
async fn queue_dropped_mid_flight() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create(QUEUE).await.unwrap();
    let first = subjects("first", 30);
    push_all(client, &first, json!({"work_ms": 1000})).await;

    let mut run = Run::new("dropped", db.url());
    run.spawn(&[("FQ_CONCURRENCY", "4"), ("FQ_GRACE_MS", "5000")]);
    assert!(
        run.wait_started(4, Duration::from_secs(30)).await,
        "the worker never started handling"
    );
    // dropping a queue a worker (and its maintenance) is busy on must work;
    // retried so that the rest of the scenario still runs
    let mut dropped = false;
    for _ in 0..10 {
        match client.queue_drop(QUEUE).await {
            Ok(was) => {
                assert!(was, "the queue existed");
                dropped = true;
                break;
            }
            Err(e) => {
                run.violation(
                    "queue_drop beside a running worker",
                    format!("queue_drop failed: {e}"),
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(dropped, "queue_drop never succeeded: {:?}", run.violations);
    // the in-flight handlers finish against a queue that is gone
    let start = Instant::now();
    while run.runs().iter().any(|r| r.ended.is_none()) && start.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.stop_all().await;

    client.queue_create(QUEUE).await.unwrap();
    let second = subjects("second", 20);
    push_all(client, &second, json!({})).await;
    run.spawn(&[("FQ_CONCURRENCY", "4"), ("FQ_GRACE_MS", "5000")]);
    if !wait_completed(&db.pool, &second, Duration::from_secs(40)).await {
        let done = completed_of(&db.pool, &second).await;
        run.violation(
            "liveness",
            format!(
                "after the queue was dropped and created again, only {done} of {} new documents completed within 40 s",
                second.len()
            ),
        );
    }
    run.stop_all().await;
    check_invariants(&db.pool, client, &mut run, &second, Check::default()).await;
}

/// The queue is paused while handlers run: they finish, nothing new is picked
/// while paused, the idle worker does not hammer the database (planned
/// documents fall due meanwhile), and after the resume everything drains.
#[tokio::test]
async fn queue_paused_mid_flight_then_resumed() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create(QUEUE).await.unwrap();
    let now = subjects("now", 40);
    push_all(client, &now, json!({"work_ms": 400})).await;

    let mut run = Run::new("paused", db.url());
    // no maintenance here: the worker's own polling is what is measured
    run.spawn(&[
        ("FQ_CONCURRENCY", "4"),
        ("FQ_MAINTENANCE_MS", "0"),
        ("FQ_IDLE_POLL_MS", "1000"),
    ]);
    assert!(
        run.wait_started(4, Duration::from_secs(30)).await,
        "the worker never started handling"
    );
    assert!(client.queue_pause(QUEUE).await.unwrap());
    let paused_at = chrono::Utc::now().timestamp_micros();
    // documents that fall due while the queue is paused
    let later = subjects("later", 10);
    let docs: Vec<NewDoc> = later
        .iter()
        .map(|s| NewDoc::new(s.clone()).at(Schedule::after(Duration::from_millis(500))))
        .collect();
    client.push_many(QUEUE, &docs).await.unwrap();
    // in-flight handlers finish (400 ms of work each), then silence
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = idle_transactions(&db.pool, Duration::from_secs(4)).await;
    eprintln!("paused: {spent} transactions in the database in 4 s while paused and idle");
    if spent > 200 {
        run.violation(
            "idle worker polls at idle_poll",
            format!("{spent} transactions in 4 s from a worker idle on a paused queue (idle_poll 1 s): it polls in a tight loop"),
        );
    }
    let picked_while_paused: Vec<String> = run
        .runs()
        .into_iter()
        .filter(|r| r.started > paused_at + 200_000)
        .map(|r| r.subject)
        .collect();
    if !picked_while_paused.is_empty() {
        run.violation(
            "pause",
            format!("documents picked while the queue was paused: {picked_while_paused:?}"),
        );
    }
    let active = scalar(
        &db.pool,
        &format!("SELECT count(*) FROM {DOCS} WHERE status = 2"),
    )
    .await;
    if active > 0 {
        run.violation(
            "pause",
            format!("{active} documents still active 6 s into the pause"),
        );
    }
    assert!(client.queue_resume(QUEUE).await.unwrap());
    let all: Vec<String> = now.iter().chain(&later).cloned().collect();
    if !wait_completed(&db.pool, &all, Duration::from_secs(40)).await {
        let done = completed_of(&db.pool, &all).await;
        run.violation(
            "liveness",
            format!(
                "after resume only {done} of {} documents completed within 40 s",
                all.len()
            ),
        );
    }
    run.stop_all().await;
    check_invariants(&db.pool, client, &mut run, &all, Check::default()).await;
}

/// A private cluster for the crash test, stopped and removed on drop.
struct OwnCluster {
    pg: fetchq_core::embedded::EmbeddedPostgres,
}

impl OwnCluster {
    /// `pg_ctl stop -m immediate`: the server dies without a checkpoint, as in
    /// a crash; whatever was not flushed to the WAL is lost.
    fn crash(&self) {
        let pg_ctl = self.pg.bin_dir().join("pg_ctl");
        let data = self.pg.data_dir().display().to_string();
        let mut cmd = if fetchq_core::embedded::running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            Command::new(&pg_ctl)
        };
        let out = cmd
            .args(["-D", &data, "-w", "-m", "immediate", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop -m immediate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.pg.stop();
        if let Some(parent) = self.pg.data_dir().parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// PostgreSQL (a private cluster: fsync and synchronous_commit on) crashes
/// right after workers picked documents, then restarts. A pick acknowledged
/// to a worker must survive the crash, or the document is leased again while
/// the first handler still runs.
///
/// `wal_writer_delay` is raised to 10 s so that the WAL writer does not flush
/// a commit that did not wait for its flush within the few hundred
/// milliseconds before the crash: it widens the window, it does not create it
/// (with the default 200 ms the same loss happens, less often).
#[tokio::test]
async fn postgres_crash_right_after_picks_leases_nothing_twice() {
    let dir = std::env::temp_dir().join(format!(
        "fetchq-faults-crash-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    let cluster = OwnCluster {
        pg: fetchq_core::embedded::EmbeddedPostgres::new(dir.join("pg"))
            .unwrap()
            .setting("fsync", "on")
            .setting("synchronous_commit", "on")
            .setting("wal_writer_delay", "10s"),
    };
    let url = cluster.pg.start().unwrap().url("postgres");
    let pool = PgPool::connect(&url).await.unwrap();
    let client = Client::new(pool.clone());
    client.migrate().await.unwrap();
    client.queue_create(QUEUE).await.unwrap();
    let docs = subjects("crash", 4);
    // long handlers: still running when the server is back
    push_all(&client, &docs, json!({"work_ms": 8000})).await;
    pool.close().await;

    let mut run = Run::new("crash", url.clone());
    let env = [
        ("FQ_CONCURRENCY", "4"),
        ("FQ_LEASE_MS", "30000"),
        ("FQ_GRACE_MS", "10000"),
        ("FQ_MAINTENANCE_MS", "0"),
    ];
    run.spawn(&env);
    run.spawn(&env);
    assert!(
        run.wait_started(4, Duration::from_secs(30)).await,
        "the workers never started handling"
    );
    cluster.crash();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = cluster.pg.start().unwrap();
    assert_eq!(
        again.url("postgres"),
        url,
        "the server came back on its port"
    );
    let pool = PgPool::connect(&url).await.unwrap();
    let client = Client::new(pool.clone());
    let leased_after = scalar(
        &pool,
        &format!("SELECT count(*) FROM {DOCS} WHERE status = 2"),
    )
    .await;
    eprintln!("crash: {leased_after} of 4 picks survived the crash");
    if !wait_completed(&pool, &docs, Duration::from_secs(60)).await {
        let done = completed_of(&pool, &docs).await;
        run.violation(
            "liveness",
            format!("only {done} of 4 documents completed within 60 s of the restart"),
        );
    }
    run.stop_all().await;
    check_invariants(&pool, &client, &mut run, &docs, Check::default()).await;
    pool.close().await;
}

/// The workers' backends are terminated again and again (only backends of
/// this test's database, by application name) while they drain the queue.
#[tokio::test]
async fn backends_killed_repeatedly_while_draining() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create(QUEUE).await.unwrap();
    client
        .queue_set_retry_backoff(
            QUEUE,
            Duration::from_millis(100),
            Duration::from_secs(1),
            0.0,
        )
        .await
        .unwrap();
    client.queue_set_max_attempts(QUEUE, 1000).await.unwrap();
    let docs = subjects("kill", 400);
    push_all(client, &docs, json!({"work_ms": 5})).await;

    let mut run = Run::new("killed", db.url());
    let env = [("FQ_CONCURRENCY", "4"), ("FQ_GRACE_MS", "5000")];
    run.spawn(&env);
    run.spawn(&env);
    let start = Instant::now();
    let mut killed = 0i64;
    while start.elapsed() < Duration::from_secs(8)
        && completed_of(&db.pool, &docs).await < docs.len() as i64
    {
        killed += scalar(
            &db.pool,
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'fetchq-fault-worker'
               AND pid <> pg_backend_pid()) t",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("killed {killed} backends in {:?}", start.elapsed());
    assert!(
        killed > 0,
        "the test terminated no backend: check the application_name filter"
    );
    if !wait_completed(&db.pool, &docs, Duration::from_secs(60)).await {
        let done = completed_of(&db.pool, &docs).await;
        run.violation(
            "liveness",
            format!(
                "only {done} of {} documents completed within 60 s after the kills",
                docs.len()
            ),
        );
    }
    run.stop_all().await;
    check_invariants(&db.pool, client, &mut run, &docs, Check::default()).await;
}

/// A transaction that pushed stays open while other pushes commit: the
/// committed documents are handled promptly (woken by their notification), not
/// after idle_poll (30 s here).
#[tokio::test]
async fn long_open_pushing_transaction_does_not_delay_others() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create(QUEUE).await.unwrap();
    let mut run = Run::new("longtx", db.url());
    run.spawn(&[
        ("FQ_CONCURRENCY", "4"),
        ("FQ_IDLE_POLL_MS", "30000"),
        ("FQ_MAINTENANCE_MS", "0"),
    ]);
    // the worker is up and idle (listening) once it handled a first document
    client.push(QUEUE, &NewDoc::new("warmup")).await.unwrap();
    assert!(
        reached(&db.pool, COMPLETED, 1, Duration::from_secs(30)).await,
        "the worker never handled its first document"
    );
    // promptness below must come from wake-ups, not from a worker that polls
    // in a tight loop: an idle worker with idle_poll 30 s is nearly silent
    let spent = idle_transactions(&db.pool, Duration::from_secs(3)).await;
    eprintln!("longtx: {spent} transactions in 3 s from an idle worker (idle_poll 30 s)");
    if spent > 60 {
        run.violation(
            "idle worker polls at idle_poll",
            format!("{spent} transactions in 3 s from an idle worker with idle_poll 30 s: it polls in a tight loop"),
        );
    }

    let mut tx = db.pool.begin().await.unwrap();
    client
        .push_with(&mut *tx, QUEUE, &NewDoc::new("held"))
        .await
        .unwrap();
    let mut expected = vec!["warmup".to_owned(), "held".to_owned()];
    for i in 0..3 {
        let subject = format!("prompt-{i}");
        client
            .push(QUEUE, &NewDoc::new(subject.clone()))
            .await
            .unwrap();
        let pushed = Instant::now();
        let ok = wait_completed(
            &db.pool,
            std::slice::from_ref(&subject),
            Duration::from_secs(5),
        )
        .await;
        eprintln!("longtx: {subject} ok={ok} after {:?}", pushed.elapsed());
        if !ok {
            run.violation(
                "prompt wake-up",
                format!("{subject}, committed while another pushing transaction stayed open, was not handled within 5 s (idle_poll 30 s)"),
            );
        }
        expected.push(subject);
    }
    tx.commit().await.unwrap();
    if !wait_completed(&db.pool, &["held".to_owned()], Duration::from_secs(5)).await {
        run.violation(
            "prompt wake-up",
            "the held document was not handled within 5 s of its commit",
        );
    }
    // whatever is left (if a wake-up was lost) is handled by the next idle poll
    if !wait_completed(&db.pool, &expected, Duration::from_secs(40)).await {
        run.violation("liveness", "documents left unhandled after 40 s");
    }
    run.stop_all().await;
    check_invariants(&db.pool, client, &mut run, &expected, Check::default()).await;
}

/// A worker with a pool of 3 connections and 8 handlers that each hold a
/// connection of that pool: no deadlock, the queue drains.
#[tokio::test]
async fn full_connection_pool_does_not_deadlock() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create(QUEUE).await.unwrap();
    client
        .queue_set_retry_backoff(
            QUEUE,
            Duration::from_millis(200),
            Duration::from_secs(2),
            0.0,
        )
        .await
        .unwrap();
    client.queue_set_max_attempts(QUEUE, 1000).await.unwrap();
    let docs = subjects("pool", 60);
    push_all(client, &docs, json!({"hold_conn_ms": 200})).await;
    let mut run = Run::new("pool", db.url());
    run.spawn(&[
        ("FQ_CONCURRENCY", "8"),
        ("FQ_MAX_CONNECTIONS", "3"),
        ("FQ_GRACE_MS", "5000"),
    ]);
    if !wait_completed(&db.pool, &docs, Duration::from_secs(60)).await {
        let done = completed_of(&db.pool, &docs).await;
        run.violation(
            "liveness",
            format!(
                "only {done} of {} documents completed within 60 s with a full pool",
                docs.len()
            ),
        );
    }
    run.stop_all().await;
    check_invariants(&db.pool, client, &mut run, &docs, Check::default()).await;
}

/// SIGTERM while handlers are busy (2 s of work each, shutdown_timeout 10 s):
/// the in-flight handlers are not cancelled, they finish and their documents
/// are completed; the worker exits in time.
#[tokio::test]
async fn sigterm_lets_in_flight_handlers_finish_uncancelled() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create(QUEUE).await.unwrap();
    let docs = subjects("busy", 12);
    push_all(client, &docs, json!({"work_ms": 2000})).await;
    let mut run = Run::new("sigterm", db.url());
    run.spawn(&[("FQ_CONCURRENCY", "4"), ("FQ_GRACE_MS", "10000")]);
    assert!(
        run.wait_started(4, Duration::from_secs(30)).await,
        "the worker never started handling"
    );
    run.stop_all().await;
    let runs = run.runs();
    let cancelled: Vec<&str> = runs
        .iter()
        .filter(|r| r.cancelled)
        .map(|r| r.subject.as_str())
        .collect();
    if !cancelled.is_empty() {
        run.violation(
            "graceful shutdown lets in-flight work finish",
            format!("handlers cancelled by SIGTERM within the shutdown_timeout: {cancelled:?}"),
        );
    }
    let started: Vec<String> = runs.iter().map(|r| r.subject.clone()).collect();
    let finished = completed_of(&db.pool, &started).await;
    if finished < started.len() as i64 {
        run.violation(
            "graceful shutdown lets in-flight work finish",
            format!(
                "{finished} of {} documents in flight at SIGTERM were completed",
                started.len()
            ),
        );
    }
    check_invariants(&db.pool, client, &mut run, &docs, Check::default()).await;
}
