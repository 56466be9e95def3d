//! A worker process for the fault-injection tests (`tests/faults.rs`).
//!
//! Configured by environment: `DATABASE_URL`, `FQ_QUEUE` (default `faults`),
//! `FQ_CONCURRENCY` (8), `FQ_BATCH` (the concurrency), `FQ_LEASE_MS` (10000),
//! `FQ_IDLE_POLL_MS` (1000), `FQ_GRACE_MS` (5000), `FQ_MAINTENANCE_MS` (200;
//! 0 turns maintenance off in this process), `FQ_MAX_CONNECTIONS` (20),
//! `FQ_WORK_MS` (0, the default work per document), `FQ_RUNS_FILE` (where
//! every handler run is recorded; required), `FQ_TRANSACTION_POOLING` (`1`:
//! `DATABASE_URL` is a transaction pooler such as PgBouncer in transaction
//! mode) and `FQ_LISTEN_URL` (a direct connection for LISTEN and the
//! maintenance leader's lock, with transaction pooling).
//!
//! Each handler run appends two JSON lines to the runs file: a `start` line
//! (subject, lease token, pid, attempt, time in µs since the epoch) when it
//! begins and an `end` line (subject, token, time, outcome kind or `aborted`, whether
//! the handler saw its cancellation token fire) when it returns or is dropped.
//! The runs go to a local file, not to the database, so that recording them
//! never waits for a connection and never flushes the server's WAL (which
//! would hide a pick lost in a crash).
//!
//! What a handler does comes from the document's payload:
//! `{"outcome": "complete" | "reschedule" | "kill" | "reject" | "migrate" | "drop" | "fail",
//!   "poison": "nul" | "big", "big_bytes": n, "to_version": v, "work_ms": n, "hold_conn_ms": n,
//!   "reschedule_ms": n, "then": {...}}`.
//! A reschedule is due after `reschedule_ms` (default an hour); with `then`,
//! the document is rescheduled with `then` as its new payload (so
//! `{"outcome": "reschedule", "then": {}}` reschedules once, then completes).
//! `poison: "nul"` puts a `\u0000` into the outcome's payload (or the reject
//! message); `poison: "big"` a payload of `big_bytes` (4096) bytes.
//! `hold_conn_ms` holds one connection of the worker's pool that long.
//! The work (`work_ms`) ends early when the handler's cancellation token fires;
//! the handler then rejects the document with message `cancelled`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::{Value, json};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The runs file, shared by every handler task of the process.
#[derive(Clone)]
struct Runs(Arc<Mutex<File>>);

impl Runs {
    fn write(&self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        if let Ok(mut file) = self.0.lock() {
            // one write per line on an O_APPEND file; flushed at once (no buffer)
            let _ = file.write_all(text.as_bytes());
        }
    }
}

/// Writes the `end` line when the run ends, however it ends (a dropped
/// future writes `aborted`).
struct RunGuard {
    runs: Runs,
    subject: String,
    token: String,
    outcome: &'static str,
    cancelled: bool,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.runs.write(&json!({
            "ev": "end", "subject": self.subject, "token": self.token, "t": now_micros(),
            "outcome": self.outcome, "cancelled": self.cancelled,
        }));
    }
}

struct Faulty {
    options: HandlerOptions,
    work: Duration,
    runs: Runs,
}

fn poisoned(kind: Option<&str>, big_bytes: usize) -> Option<Value> {
    match kind {
        Some("nul") => Some(json!({"text": "before\u{0000}after"})),
        Some("big") => Some(json!({"blob": "x".repeat(big_bytes)})),
        _ => None,
    }
}

#[async_trait]
impl Handler for Faulty {
    type Payload = Value;

    fn options(&self) -> HandlerOptions {
        self.options.clone()
    }

    async fn handle(&self, doc: Doc<Value>, ctx: Context) -> Result<Outcome, HandlerError> {
        let token = ctx.lease().token.to_string();
        self.runs.write(&json!({
            "ev": "start", "subject": doc.subject, "token": token,
            "pid": std::process::id(), "attempt": doc.attempts, "t": now_micros(),
        }));
        let mut guard = RunGuard {
            runs: self.runs.clone(),
            subject: doc.subject.clone(),
            token,
            outcome: "aborted",
            cancelled: false,
        };
        let p = &doc.payload;
        let work = p
            .get("work_ms")
            .and_then(Value::as_u64)
            .map_or(self.work, Duration::from_millis);
        let hold = p
            .get("hold_conn_ms")
            .and_then(Value::as_u64)
            .map(Duration::from_millis);
        if let Some(hold) = hold {
            let mut conn = ctx.client().pool().acquire().await?;
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            tokio::time::sleep(hold).await;
            drop(conn);
        }
        if !work.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(work) => {}
                _ = ctx.cancellation_token().cancelled() => {
                    guard.cancelled = true;
                    guard.outcome = "reject";
                    return Ok(Outcome::reject("cancelled"));
                }
            }
        }
        let big = usize::try_from(p.get("big_bytes").and_then(Value::as_u64).unwrap_or(4096))
            .unwrap_or(4096);
        let poison = p.get("poison").and_then(Value::as_str);
        let payload = poisoned(poison, big);
        let with = |o: Outcome| match &payload {
            Some(v) => o.with_payload(v.clone()),
            None => o,
        };
        let outcome = match p
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("complete")
        {
            "reschedule" => {
                let delay = p
                    .get("reschedule_ms")
                    .and_then(Value::as_u64)
                    .map_or(Duration::from_secs(3600), Duration::from_millis);
                let next = Outcome::reschedule_in(delay);
                match p.get("then") {
                    Some(then) => next.with_payload(then.clone()),
                    None => with(next),
                }
            }
            "kill" => with(Outcome::kill()),
            "reject" => {
                if poison == Some("nul") {
                    Outcome::reject("bad\u{0000}message")
                } else {
                    Outcome::reject("rejected by the test")
                }
            }
            "migrate" => {
                let to = p
                    .get("to_version")
                    .and_then(Value::as_i64)
                    .and_then(|v| i32::try_from(v).ok())
                    .unwrap_or(1);
                with(Outcome::migrate(to))
            }
            "drop" => Outcome::drop_doc(),
            "fail" => {
                guard.outcome = "reject";
                return Err(HandlerError::new("failed by the test"));
            }
            _ => with(Outcome::complete()),
        };
        guard.outcome = outcome.kind();
        Ok(outcome)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("fetchq-fault-worker: set DATABASE_URL");
        return std::process::ExitCode::FAILURE;
    };
    let Ok(runs_path) = std::env::var("FQ_RUNS_FILE") else {
        eprintln!("fetchq-fault-worker: set FQ_RUNS_FILE");
        return std::process::ExitCode::FAILURE;
    };
    let file = match OpenOptions::new()
        .create(true)
        .append(true)
        .open(&runs_path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fetchq-fault-worker: cannot open {runs_path}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let queue = std::env::var("FQ_QUEUE").unwrap_or_else(|_| "faults".into());
    let concurrency = env_u64("FQ_CONCURRENCY", 8) as usize;
    let options = HandlerOptions::new(queue)
        .concurrency(concurrency)
        .batch(env_u64("FQ_BATCH", concurrency as u64) as usize)
        .lease(Duration::from_millis(env_u64("FQ_LEASE_MS", 10_000)))
        .idle_poll(Duration::from_millis(env_u64("FQ_IDLE_POLL_MS", 1000)));
    let maintenance = match env_u64("FQ_MAINTENANCE_MS", 200) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let runtime = Runtime::new(url)
        .register(Faulty {
            options,
            work: Duration::from_millis(env_u64("FQ_WORK_MS", 0)),
            runs: Runs(Arc::new(Mutex::new(file))),
        })
        .shutdown_timeout(Duration::from_millis(env_u64("FQ_GRACE_MS", 5000)))
        .max_connections(u32::try_from(env_u64("FQ_MAX_CONNECTIONS", 20)).unwrap_or(20))
        .maintenance(maintenance)
        .transaction_pooling(env_u64("FQ_TRANSACTION_POOLING", 0) == 1);
    let runtime = match std::env::var("FQ_LISTEN_URL") {
        Ok(listen) if !listen.is_empty() => runtime.listen_url(listen),
        _ => runtime,
    };
    let stats = runtime.stats();
    match runtime.run().await {
        Ok(()) => {
            let t = stats.total();
            println!(
                "{}",
                json!({"picked": t.picked, "completed": t.completed, "rescheduled": t.rescheduled,
                       "rejected": t.rejected, "lease_lost": t.lease_lost, "released": t.released})
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fetchq-fault-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
