//! The soak: a mixed load held for a long time (30 minutes by default), to
//! see whether anything grows that should stay flat: worker memory, table
//! size per document, dead tuples, latencies.
//!
//! The load: pushes at a steady rate into three queues; handlers reschedule
//! most documents a few seconds ahead (a crawler revisiting pages), then
//! complete them, reject some (retried once, or until dead), kill a few.
//! Completed documents are deleted a minute after completion (retention) by
//! maintenance, which the runtimes' leader runs. The workers are child
//! processes (`fetchq-bench soak-worker`): worker 0 lives for the whole run
//! (its RSS is the leak test); workers 1 and 2 are restarted in turn every
//! few minutes (SIGTERM, graceful shutdown, new process).
//!
//! Measured every sample period:
//! - RSS of each worker process (`VmRSS` of `/proc/<pid>/status`);
//! - the docs tables' `pg_total_relation_size` (indexes included) and rows,
//!   their `n_dead_tup`, the logs and metrics tables' sizes;
//! - push → handler start: the pusher stamps the payload with the wall clock
//!   before the push call, the handler subtracts it from its own start time
//!   (same machine, same clock); reschedule lateness likewise from the due time
//!   the handler wrote into the payload when rescheduling. Each worker prints
//!   its samples on stdout, the parent pools them per sample period;
//! - pick latency: the workers' own `fetchq_worker_pick_duration_seconds`
//!   histograms scraped from their metrics endpoints, the bucket deltas of the
//!   period summed over workers, p99 interpolated within its bucket (as
//!   Prometheus' `histogram_quantile` does).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fetchq_core::{Client, NewDoc, Retention};
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{BoxError, quantile};
use crate::Row;
use crate::server::Server;

const QUEUES: [&str; 3] = ["soak_a", "soak_b", "soak_c"];

/// Worker processes; worker 0 is never restarted.
const WORKERS: usize = 3;

/// Visits of a document before its final outcome (rescheduled in between).
const VISITS: i64 = 3;

/// The pick-latency histogram's bucket bounds, as the runtime exports them.
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Settings of a soak run.
pub(crate) struct Options {
    /// Length of the run.
    pub(crate) minutes: u64,
    /// Documents pushed per second, over all queues.
    pub(crate) rate: usize,
    /// Seconds between samples.
    pub(crate) sample_seconds: u64,
    /// Minutes between worker restarts.
    pub(crate) restart_minutes: u64,
    /// Where to write the samples (CSV).
    pub(crate) out: std::path::PathBuf,
    /// Subjects in no order (a bijective hash of the counter) instead of
    /// increasing ones: new documents land all over the primary key, as URLs
    /// do, instead of at its right end.
    pub(crate) hashed_subjects: bool,
}

/// A bijection of u64 (splitmix64's finalizer): distinct inputs, distinct
/// outputs, in no order.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// A stable spread of subjects over 0..100.
fn bucket(subject: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in subject.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100
}

/// Latency samples a worker collected since it last printed them.
#[derive(Default)]
struct Collected {
    push: Vec<f64>,
    resched: Vec<f64>,
    handled: u64,
}

struct Crawl {
    queue: &'static str,
    collected: Arc<Mutex<Collected>>,
}

#[async_trait]
impl Handler for Crawl {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new(self.queue).concurrency(16)
    }
    async fn handle(&self, doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        let start = now_ms();
        let due = doc.payload.get("due").and_then(Value::as_f64);
        if let (Some(due), Ok(mut c)) = (due, self.collected.lock()) {
            c.handled += 1;
            // retries wait out the queue's backoff: not a latency
            if doc.attempts == 1 {
                if doc.iterations == 0 {
                    c.push.push(start - due);
                } else {
                    c.resched.push(start - due);
                }
            }
        }
        // the "fetch"
        tokio::time::sleep(Duration::from_millis(5)).await;
        if doc.iterations < VISITS {
            let delay = Duration::from_millis(2_000 + bucket(&doc.subject) * 30);
            let due = now_ms() + delay.as_secs_f64() * 1000.0;
            return Ok(Outcome::reschedule_in(delay).with_payload(json!({"due": due})));
        }
        Ok(match bucket(&doc.subject) {
            // rejected once, then done
            80..88 if doc.attempts == 1 => Outcome::reject("soak: transient failure"),
            // rejected until dead (max attempts 3)
            88..92 => Outcome::reject("soak: permanent failure"),
            92..97 => Outcome::kill(),
            _ => Outcome::complete(),
        })
    }
}

/// The worker process: one handler per queue, its metrics endpoint on a free
/// port (printed first), then latency samples once a second on stdout.
pub(crate) async fn worker(url: &str) -> Result<(), BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "port {port}")?;
        out.flush()?;
    }
    let collected = Arc::new(Mutex::new(Collected::default()));
    let mut runtime = Runtime::new(url)
        .shutdown_timeout(Duration::from_secs(10))
        .metrics_listener(listener);
    for queue in QUEUES {
        runtime = runtime.register(Crawl {
            queue,
            collected: collected.clone(),
        });
    }
    let printer = {
        let collected = collected.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let c = match collected.lock() {
                    Ok(mut c) => std::mem::take(&mut *c),
                    Err(_) => return,
                };
                let mut line = format!("n {}\np", c.handled);
                for v in &c.push {
                    line.push_str(&format!(" {v:.1}"));
                }
                line.push_str("\nr");
                for v in &c.resched {
                    line.push_str(&format!(" {v:.1}"));
                }
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        })
    };
    let result = runtime.run().await;
    printer.abort();
    result?;
    Ok(())
}

/// What the workers printed since the last sample, pooled.
#[derive(Default)]
struct Pooled {
    push: Vec<f64>,
    resched: Vec<f64>,
    handled: u64,
}

struct Worker {
    child: Child,
    port: u16,
}

fn spawn_worker(url: &str, pooled: Arc<Mutex<Pooled>>) -> Result<Worker, BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["soak-worker", "--url", url])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("soak worker without stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let port = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.strip_prefix("port ").and_then(|p| p.parse::<u16>().ok()));
        let _ = tx.send(port);
        for line in lines.map_while(Result::ok) {
            let Ok(mut p) = pooled.lock() else { return };
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("n") => p.handled += parts.next().and_then(|n| n.parse().ok()).unwrap_or(0),
                Some("p") => p.push.extend(parts.filter_map(|v| v.parse::<f64>().ok())),
                Some("r") => p
                    .resched
                    .extend(parts.filter_map(|v| v.parse::<f64>().ok())),
                _ => {}
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(port)) => Ok(Worker { child, port }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err("a soak worker did not print its metrics port".into())
        }
    }
}

/// SIGTERM, then waits (killed after 30 s).
async fn stop_worker(mut worker: Worker) -> Result<Duration, BoxError> {
    let at = Instant::now();
    Command::new("kill")
        .args(["-TERM", &worker.child.id().to_string()])
        .status()?;
    while worker.child.try_wait()?.is_none() {
        if at.elapsed() > Duration::from_secs(30) {
            worker.child.kill()?;
            worker.child.wait()?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(at.elapsed())
}

/// Resident set size of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The cumulative pick-latency bucket counts of one worker (the last one is
/// +Inf), summed over its handlers.
pub(crate) async fn scrape_picks(http: &reqwest::Client, port: u16) -> Option<Vec<f64>> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut counts = vec![0.0; BUCKETS.len() + 1];
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("fetchq_worker_pick_duration_seconds_bucket{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(le) = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("le=\""))
            .map(|l| l.trim_end_matches('"'))
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let index = if le == "+Inf" {
            BUCKETS.len()
        } else {
            match le.parse::<f64>() {
                Ok(b) => match BUCKETS.iter().position(|x| (x - b).abs() < 1e-9) {
                    Some(i) => i,
                    None => continue,
                },
                Err(_) => continue,
            }
        };
        counts[index] += value;
    }
    Some(counts)
}

/// The `p` quantile of cumulative bucket counts, interpolated within its
/// bucket; in ms.
pub(crate) fn histogram_quantile(cumulative: &[f64], p: f64) -> f64 {
    let total = cumulative.last().copied().unwrap_or(0.0);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = total * p;
    let mut below = 0.0;
    for (i, &c) in cumulative.iter().enumerate() {
        if c >= rank {
            let Some(&upper) = BUCKETS.get(i) else {
                return BUCKETS[BUCKETS.len() - 1] * 1000.0;
            };
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            let width = c - below;
            let into = if width > 0.0 {
                (rank - below) / width
            } else {
                1.0
            };
            return (lower + (upper - lower) * into) * 1000.0;
        }
        below = c;
    }
    f64::NAN
}

/// One sample of the run.
#[derive(Clone, Default)]
struct Sample {
    t: f64,
    rss: [f64; WORKERS],
    docs_bytes: f64,
    docs_index_bytes: f64,
    docs_rows: f64,
    pending: f64,
    dead_docs: f64,
    dead_tuples: f64,
    logs_bytes: f64,
    queue_metrics_bytes: f64,
    metrics_bytes: f64,
    metrics_writes_bytes: f64,
    handled_per_s: f64,
    push_p99: f64,
    resched_p99: f64,
    pick_p50: f64,
    pick_p99: f64,
    restarts: u64,
    // kept for pooling the windows, not written
    push: Vec<f64>,
    resched: Vec<f64>,
    picks: Vec<f64>,
}

async fn size(pool: &PgPool, table: &str) -> Result<(f64, f64), BoxError> {
    let (total, index): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size($1::regclass), pg_indexes_size($1::regclass)",
    )
    .bind(table)
    .fetch_one(pool)
    .await?;
    Ok((total as f64, index as f64))
}

async fn sample_tables(pool: &PgPool, s: &mut Sample) -> Result<(), BoxError> {
    for q in QUEUES {
        let docs = format!("fetchq_data.{q}__docs");
        let (total, index) = size(pool, &docs).await?;
        s.docs_bytes += total;
        s.docs_index_bytes += index;
        let (rows, pending, dead): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*), count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = -1) FROM {docs}"
        ))
        .fetch_one(pool)
        .await?;
        s.docs_rows += rows as f64;
        s.pending += pending as f64;
        s.dead_docs += dead as f64;
        let dead_tup: Option<i64> = sqlx::query_scalar(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = 'fetchq_data' AND relname = $1",
        )
        .bind(format!("{q}__docs"))
        .fetch_optional(pool)
        .await?;
        s.dead_tuples += dead_tup.unwrap_or(0) as f64;
        s.logs_bytes += size(pool, &format!("fetchq_data.{q}__logs")).await?.0;
        s.queue_metrics_bytes += size(pool, &format!("fetchq_data.{q}__metrics")).await?.0;
    }
    s.metrics_bytes = size(pool, "fetchq.metrics").await?.0;
    s.metrics_writes_bytes = size(pool, "fetchq.metrics_writes").await?.0;
    Ok(())
}

fn p99(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    quantile(values, 0.99)
}

fn write_csv(path: &std::path::Path, samples: &[Sample]) -> Result<(), BoxError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let rss_cols: Vec<String> = (0..WORKERS).map(|i| format!("worker{i}_rss_mb")).collect();
    writeln!(
        f,
        "t_s,{},docs_bytes,docs_index_bytes,docs_rows,pending,dead_docs,n_dead_tup,logs_bytes,queue_metrics_bytes,fetchq_metrics_bytes,metrics_writes_bytes,handled_per_s,push_start_p99_ms,reschedule_lateness_p99_ms,pick_p50_ms,pick_p99_ms,restarts",
        rss_cols.join(",")
    )?;
    for s in samples {
        let rss: Vec<String> = s.rss.iter().map(|r| format!("{r:.2}")).collect();
        writeln!(
            f,
            "{:.0},{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.2},{:.2},{:.2},{:.2},{}",
            s.t,
            rss.join(","),
            s.docs_bytes,
            s.docs_index_bytes,
            s.docs_rows,
            s.pending,
            s.dead_docs,
            s.dead_tuples,
            s.logs_bytes,
            s.queue_metrics_bytes,
            s.metrics_bytes,
            s.metrics_writes_bytes,
            s.handled_per_s,
            s.push_p99,
            s.resched_p99,
            s.pick_p50,
            s.pick_p99,
            s.restarts
        )?;
    }
    f.flush()?;
    Ok(())
}

/// One row of the final table: the first window against the last.
struct Compared {
    metric: &'static str,
    unit: &'static str,
    first: f64,
    last: f64,
    /// Whether it is held to "flat within 20%".
    checked: bool,
}

fn mean(samples: &[&Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    let v: Vec<f64> = samples
        .iter()
        .map(|s| f(s))
        .filter(|v| v.is_finite())
        .collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn pooled_p99(samples: &[&Sample], f: impl Fn(&Sample) -> &Vec<f64>) -> f64 {
    let mut all: Vec<f64> = samples.iter().flat_map(|s| f(s).iter().copied()).collect();
    p99(&mut all)
}

fn pooled_pick(samples: &[&Sample], p: f64) -> f64 {
    let mut sum = vec![0.0; BUCKETS.len() + 1];
    for s in samples {
        for (a, b) in sum.iter_mut().zip(&s.picks) {
            *a += b;
        }
    }
    histogram_quantile(&sum, p)
}

fn compare(first: &[&Sample], last: &[&Sample]) -> Vec<Compared> {
    let restarted = |s: &Sample| s.rss[1..].iter().sum::<f64>() / (WORKERS - 1) as f64;
    let per_row = |s: &Sample| s.docs_bytes / s.docs_rows.max(1.0);
    let both = |metric, unit, checked, f: &dyn Fn(&[&Sample]) -> f64| Compared {
        metric,
        unit,
        first: f(first),
        last: f(last),
        checked,
    };
    vec![
        both("RSS, worker 0 (never restarted)", "MB", true, &|w| {
            mean(w, |s| s.rss[0])
        }),
        both("RSS, workers 1-2 (restarted)", "MB", true, &|w| {
            mean(w, restarted)
        }),
        both("docs tables size per document", "bytes", true, &|w| {
            mean(w, per_row)
        }),
        both(
            "dead tuples (n_dead_tup, docs tables)",
            "tuples",
            true,
            &|w| mean(w, |s| s.dead_tuples),
        ),
        both("p99 push -> handler start", "ms", true, &|w| {
            pooled_p99(w, |s| &s.push)
        }),
        both("p99 reschedule due -> handler start", "ms", true, &|w| {
            pooled_p99(w, |s| &s.resched)
        }),
        both("p99 pick (workers' histograms)", "ms", true, &|w| {
            pooled_pick(w, 0.99)
        }),
        both("p50 pick (workers' histograms)", "ms", false, &|w| {
            pooled_pick(w, 0.5)
        }),
        both("dead tuples, most in one sample", "tuples", false, &|w| {
            w.iter().map(|s| s.dead_tuples).fold(0.0, f64::max)
        }),
        both("handled", "docs/s", false, &|w| {
            mean(w, |s| s.handled_per_s)
        }),
        both("docs rows (all statuses)", "rows", false, &|w| {
            mean(w, |s| s.docs_rows)
        }),
        both("dead documents (status -1)", "rows", false, &|w| {
            mean(w, |s| s.dead_docs)
        }),
        both("pending backlog (status 1)", "rows", false, &|w| {
            mean(w, |s| s.pending)
        }),
        both("docs tables, indexes included", "MB", false, &|w| {
            mean(w, |s| s.docs_bytes / 1_048_576.0)
        }),
        both("logs tables", "MB", false, &|w| {
            mean(w, |s| s.logs_bytes / 1_048_576.0)
        }),
        both(
            "metrics tables (fetchq.metrics, metrics_writes, per queue)",
            "MB",
            false,
            &|w| {
                mean(w, |s| {
                    (s.metrics_bytes + s.metrics_writes_bytes + s.queue_metrics_bytes) / 1_048_576.0
                })
            },
        ),
    ]
}

/// Runs the soak and prints its table; the rows carry the last window as
/// fetchq and the first as baseline (their ratio is last / first).
pub(crate) async fn run(server: &Server, opts: &Options) -> Result<Vec<Row>, BoxError> {
    let total = Duration::from_secs(opts.minutes * 60);
    eprintln!(
        "soak: {} min, {} docs/s into {} queues ({} subjects), {WORKERS} worker processes, samples every {} s ...",
        opts.minutes,
        opts.rate,
        QUEUES.len(),
        if opts.hashed_subjects {
            "hashed"
        } else {
            "increasing"
        },
        opts.sample_seconds
    );
    let (pool, url) = server.database("bench_soak", 8).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    for q in QUEUES {
        client.queue_create(q).await?;
        client.queue_set_max_attempts(q, 3).await?;
        client
            .queue_set_retry_backoff(q, Duration::from_secs(1), Duration::from_secs(10), 0.2)
            .await?;
        client
            .queue_set_completed_retention(q, Retention::After(Duration::from_secs(60)))
            .await?;
        client
            .queue_set_logs_retention(q, Duration::from_secs(300))
            .await?;
    }

    let pooled = Arc::new(Mutex::new(Pooled::default()));
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        workers.push(spawn_worker(&url, pooled.clone())?);
    }

    // the pusher: every 100 ms a batch into each queue
    let pushing = tokio_util_stop();
    let pusher = {
        let client = client.clone();
        let stop = pushing.clone();
        let per_tick = (opts.rate / 10 / QUEUES.len()).max(1);
        let hashed = opts.hashed_subjects;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0usize;
            let mut pushed = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                for q in QUEUES {
                    let due = now_ms();
                    let batch: Vec<NewDoc> = (0..per_tick)
                        .map(|i| {
                            NewDoc::new(if hashed {
                                format!("h{:016x}", mix((n + i) as u64))
                            } else {
                                format!("s{:010}", n + i)
                            })
                                .payload(json!({"due": due, "url": format!("https://example.com/page/{}", n + i)}))
                        })
                        .collect();
                    n += per_tick;
                    pushed += client.push_many(q, &batch).await?;
                }
            }
            Ok::<u64, fetchq_core::Error>(pushed)
        })
    };

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let start = Instant::now();
    let every = Duration::from_secs(opts.sample_seconds.max(1));
    let restart_every = Duration::from_secs(opts.restart_minutes.max(1) * 60);
    let mut next_sample = start + every;
    let mut next_restart = start + restart_every;
    let mut restarts = 0u64;
    let mut last_counts: HashMap<u32, Vec<f64>> = HashMap::new();
    let mut last_sample_at = start;
    let mut samples: Vec<Sample> = Vec::new();
    while start.elapsed() < total {
        let now = Instant::now();
        if now >= next_restart {
            let index = 1 + (restarts as usize % (WORKERS - 1));
            let fresh = spawn_worker(&url, pooled.clone())?;
            let old = std::mem::replace(&mut workers[index], fresh);
            last_counts.remove(&old.child.id());
            let took = stop_worker(old).await?;
            restarts += 1;
            eprintln!(
                "  {:>5.0} s: worker {index} restarted (old one stopped in {:.1} s)",
                start.elapsed().as_secs_f64(),
                took.as_secs_f64()
            );
            next_restart += restart_every;
        }
        if now >= next_sample {
            let mut s = Sample {
                t: start.elapsed().as_secs_f64(),
                restarts,
                ..Sample::default()
            };
            for (i, w) in workers.iter().enumerate() {
                s.rss[i] = rss_mb(w.child.id());
            }
            let mut picks = vec![0.0; BUCKETS.len() + 1];
            for w in &workers {
                if let Some(counts) = scrape_picks(&http, w.port).await {
                    let before = last_counts
                        .get(&w.child.id())
                        .cloned()
                        .unwrap_or_else(|| vec![0.0; counts.len()]);
                    for ((p, c), b) in picks.iter_mut().zip(&counts).zip(&before) {
                        *p += (c - b).max(0.0);
                    }
                    last_counts.insert(w.child.id(), counts);
                }
            }
            s.pick_p50 = histogram_quantile(&picks, 0.5);
            s.pick_p99 = histogram_quantile(&picks, 0.99);
            s.picks = picks;
            sample_tables(&pool, &mut s).await?;
            let got = pooled
                .lock()
                .map(|mut p| std::mem::take(&mut *p))
                .unwrap_or_default();
            let period = last_sample_at.elapsed().as_secs_f64();
            last_sample_at = Instant::now();
            s.handled_per_s = got.handled as f64 / period;
            s.push = got.push;
            s.resched = got.resched;
            s.push_p99 = p99(&mut s.push);
            s.resched_p99 = p99(&mut s.resched);
            eprintln!(
                "  {:>5.0} s: rss {:.1}/{:.1}/{:.1} MB, docs {:.0} rows {:.1} MB, dead tup {:.0}, {:.0} handled/s, p99 push->start {:.0} ms, resched {:.0} ms, pick p50 {:.1} p99 {:.1} ms, pending {:.0}",
                s.t,
                s.rss[0],
                s.rss[1],
                s.rss[2],
                s.docs_rows,
                s.docs_bytes / 1_048_576.0,
                s.dead_tuples,
                s.handled_per_s,
                s.push_p99,
                s.resched_p99,
                s.pick_p50,
                s.pick_p99,
                s.pending
            );
            samples.push(s);
            write_csv(&opts.out, &samples)?;
            next_sample += every;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pushing.store(true, std::sync::atomic::Ordering::Relaxed);
    let pushed = pusher.await??;
    for w in workers {
        stop_worker(w).await?;
    }
    pool.close().await;
    write_csv(&opts.out, &samples)?;
    eprintln!("samples written to {}", opts.out.display());

    let window = (total.as_secs_f64() / 3.0).min(300.0);
    let end = samples.last().map_or(0.0, |s| s.t);
    let first: Vec<&Sample> = samples.iter().filter(|s| s.t <= window + 1.0).collect();
    let last: Vec<&Sample> = samples.iter().filter(|s| s.t > end - window).collect();
    let rows = compare(&first, &last);
    println!(
        "\nsoak: {} min, {pushed} documents pushed, {restarts} worker restarts; first {:.0} s ({} samples) against last {:.0} s ({} samples)\n",
        opts.minutes,
        window,
        first.len(),
        window,
        last.len()
    );
    println!("| metric | first | last | last/first | verdict |\n|---|---:|---:|---:|---|");
    let mut out = Vec::new();
    for c in &rows {
        let ratio = c.last / c.first;
        let verdict = if !c.checked {
            "info".to_string()
        } else if !ratio.is_finite() {
            "n/a".to_string()
        } else if ratio <= 1.2 {
            if ratio < 0.8 {
                "PASS (fell)".to_string()
            } else {
                "PASS".to_string()
            }
        } else {
            "FAIL".to_string()
        };
        println!(
            "| {} ({}) | {:.2} | {:.2} | {:.2} | {} |",
            c.metric, c.unit, c.first, c.last, ratio, verdict
        );
        out.push(Row {
            workload: format!("soak: {}", c.metric),
            fetchq: c.last,
            baseline: Some(c.first),
            unit: c.unit,
            note: format!(
                "last vs first {window:.0} s of {} min: {verdict}",
                opts.minutes
            ),
        });
    }
    Ok(out)
}

fn tokio_util_stop() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}
