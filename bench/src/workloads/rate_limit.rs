//! Rate limits. Two rows:
//! - what the feature costs a queue without a limit: the per-queue pick
//!   statement of schema 16 against the one before rate limits
//!   (`pick_before_rate_limits.sql`), the same picks on two equal queues,
//!   alternated over several rounds (the median of the rounds' ratios);
//! - whether a limited queue holds its rate when 8 runtimes (each its own
//!   pool, as 8 processes would be) work it: leases per second against the
//!   limit, with the busiest one-second window in the note.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::chrono::{self, DateTime, Utc};
use fetchq_core::{Client, RateLimit};
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;
use sqlx::PgPool;

use super::BoxError;
use crate::Row;
use crate::server::Server;

const ROUNDS: usize = 7;
const PICKERS: usize = 8;
const PICKS_PER_ROUND: usize = 150;
const LIMIT: usize = 10;

const CURRENT: &str = include_str!("../../../crates/fetchq-core/sql/per_queue/pick.sql");
const BEFORE: &str = include_str!("pick_before_rate_limits.sql");

/// `PICKERS` tasks each running `PICKS_PER_ROUND` picks of `LIMIT` with
/// `statement` on `queue`; returns documents leased per second.
async fn pick_round(pool: &PgPool, statement: &str, queue: &str) -> Result<f64, BoxError> {
    let text = statement
        .replace("{docs}", &format!("\"fetchq_data\".\"{queue}__docs\""))
        .replace("{limit}", &LIMIT.to_string());
    let text: &'static str = Box::leak(text.into_boxed_str());
    let start = Instant::now();
    let leased = super::run_clients(PICKERS, |_| {
        let (pool, queue) = (pool.clone(), queue.to_owned());
        async move {
            let mut n = 0usize;
            for _ in 0..PICKS_PER_ROUND {
                let rows = sqlx::query(text)
                    .bind(&queue)
                    .bind(0_i32)
                    .bind(Duration::from_secs(300))
                    .bind(true)
                    .fetch_all(&pool)
                    .await?;
                n += rows.len();
            }
            Ok::<usize, sqlx::Error>(n)
        }
    })
    .await?;
    let total: usize = leased.iter().sum();
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// The unlimited pick, schema 16 against the statement before rate limits.
async fn unlimited_cost(server: &Server) -> Result<Row, BoxError> {
    let (pool, _) = server.database("bench_rate_unlimited", 20).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    let per_round = PICKERS * PICKS_PER_ROUND * LIMIT;
    for q in ["now", "before"] {
        client.queue_create(q).await?;
        for chunk in super::docs(q, 0..per_round * ROUNDS).chunks(5_000) {
            client.push_many(q, chunk).await?;
        }
    }
    // a limited queue beside them, as in a real database
    client.queue_create("limited").await?;
    client
        .queue_set_rate_limit("limited", Some(RateLimit::new(5, Duration::from_secs(1))?))
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    // warm both statements up
    pick_round(&pool, CURRENT, "now").await?;
    pick_round(&pool, BEFORE, "before").await?;
    let (mut now, mut before, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS - 1 {
        let (a, b) = if round % 2 == 0 {
            let a = pick_round(&pool, CURRENT, "now").await?;
            (a, pick_round(&pool, BEFORE, "before").await?)
        } else {
            let b = pick_round(&pool, BEFORE, "before").await?;
            (pick_round(&pool, CURRENT, "now").await?, b)
        };
        eprintln!("  round {round}: schema 16 {a:.0} docs/s, before {b:.0} docs/s");
        now.push(a);
        before.push(b);
        ratios.push(a / b);
    }
    pool.close().await;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        super::quantile(v, 0.5)
    };
    let ratio = median(&mut ratios);
    Ok(Row {
        workload: format!(
            "pick on an unlimited queue, {PICKERS} pickers, limit {LIMIT}: schema 16 vs the statement before rate limits"
        ),
        fetchq: median(&mut now),
        baseline: Some(median(&mut before)),
        unit: "docs/s",
        note: format!(
            "medians of {} alternated rounds; median of the rounds' ratios {ratio:.3} (goal >= 0.97)",
            ROUNDS - 1
        ),
    })
}

/// Records each document's pick time (its lease's expiry less the lease).
struct Recorder {
    times: Arc<Mutex<Vec<DateTime<Utc>>>>,
}

const LEASE: Duration = Duration::from_secs(60);

#[async_trait]
impl Handler for Recorder {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("polite")
            .concurrency(8)
            .lease(LEASE)
            .idle_poll(Duration::from_millis(500))
    }
    async fn handle(&self, _doc: Doc<Value>, ctx: Context) -> Result<Outcome, HandlerError> {
        let lease = chrono::Duration::from_std(LEASE).unwrap_or_default();
        if let Ok(mut t) = self.times.lock() {
            t.push(ctx.lease().expires_at - lease);
        }
        Ok(Outcome::complete())
    }
}

/// 8 runtimes on a queue limited to `rate` per second for `seconds`.
async fn limited_holds(server: &Server, rate: u32, seconds: u64) -> Result<Row, BoxError> {
    let (pool, _) = server.database("bench_rate_limited", 10).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("polite").await?;
    let docs = rate as usize * (seconds as usize + 5);
    for chunk in super::docs("page", 0..docs).chunks(5_000) {
        client.push_many("polite", chunk).await?;
    }
    client
        .queue_set_rate_limit(
            "polite",
            Some(RateLimit::new(rate, Duration::from_secs(1))?),
        )
        .await?;
    let times = Arc::new(Mutex::new(Vec::new()));
    let mut stops = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..8 {
        let (own, _) = server.database_pool("bench_rate_limited", 6).await?;
        let runtime = Runtime::new(own)
            .handle_signals(false)
            .maintenance(Some(Duration::from_secs(1)))
            .register(Recorder {
                times: times.clone(),
            });
        stops.push(runtime.shutdown_token());
        runs.push(tokio::spawn(runtime.run()));
    }
    tokio::time::sleep(Duration::from_secs(seconds + 2)).await;
    for s in &stops {
        s.cancel();
    }
    for r in runs {
        r.await??;
    }
    pool.close().await;
    let mut t = times.lock().map_err(|_| "poisoned")?.clone();
    t.sort();
    let second = chrono::Duration::seconds(1);
    let worst = (0..t.len())
        .map(|i| t[i..].iter().take_while(|x| **x - t[i] < second).count())
        .max()
        .unwrap_or(0);
    // the steady part: from 1 s after the first lease, `seconds` long
    let from = t.first().copied().unwrap_or_default() + second;
    let span = chrono::Duration::seconds(seconds as i64);
    let steady = t
        .iter()
        .filter(|x| **x >= from && **x - from < span)
        .count();
    let achieved = steady as f64 / seconds as f64;
    Ok(Row {
        workload: format!(
            "queue limited to {rate}/s, 8 runtimes with their own pools: leases/s vs the limit"
        ),
        fetchq: achieved,
        baseline: Some(f64::from(rate)),
        unit: "docs/s",
        note: format!(
            "{steady} leases in {seconds} s of steady state; busiest 1 s window {worst} (never above {rate}); pick times from the database's clock"
        ),
    })
}

/// Both rows.
pub(crate) async fn run(server: &Server) -> Result<Vec<Row>, BoxError> {
    eprintln!("rate limit: unlimited pick cost ...");
    let cost = unlimited_cost(server).await?;
    eprintln!("rate limit: a limited queue with 8 runtimes ...");
    let held = limited_holds(server, 50, 10).await?;
    Ok(vec![cost, held])
}
