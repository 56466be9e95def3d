//! Rate limits. Two rows:
//! - what the feature costs a queue without a limit: the per-queue pick
//!   statement of schema 17 against the one before rate limits
//!   (`pick_before_rate_limits.sql`), the same picks on two equal queues,
//!   alternated over several rounds (the median of the rounds' ratios);
//! - whether a limited queue holds its rate when 8 runtimes (each its own
//!   pool, as 8 processes would be) work it: leases per second against the
//!   limit, with the busiest one-second window in the note;
//! - per-key concurrency: an empty pick over 10 full keys holding 100,000
//!   due documents against the same over 10 full keys holding 100 (the cost
//!   of skipping full keys does not grow with the documents behind them).

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

const ROUNDS: usize = 9;
const PICKERS: usize = 8;
const PICKS_PER_ROUND: usize = 250;
const LIMIT: usize = 10;

const CURRENT: &str = include_str!("../../../crates/fetchq-core/sql/per_queue/pick.sql");
const BEFORE: &str = include_str!("pick_before_rate_limits.sql");

/// The two statements for `queue` (`{docs}` and `{limit}` filled in).
fn texts(queue: &str) -> [&'static str; 2] {
    [CURRENT, BEFORE].map(|t| {
        let text = t
            .replace("{docs}", &format!("\"fetchq_data\".\"{queue}__docs\""))
            .replace("{limit}", &LIMIT.to_string());
        &*Box::leak(text.into_boxed_str())
    })
}

/// One round: `PICKERS` tasks, each running `PICKS_PER_ROUND` picks of
/// `LIMIT` with each statement, alternated pick by pick (the current one on
/// queue `now`, the old one on `before`), so the host's drift hits both
/// alike. Returns documents leased per second of each statement's own time.
async fn pick_round(pool: &PgPool) -> Result<(f64, f64), BoxError> {
    let [current, _] = texts("now");
    let [_, before_text] = texts("before");
    let results = super::run_clients(PICKERS, |task| {
        let pool = pool.clone();
        async move {
            let mut spent = [Duration::ZERO; 2];
            let mut leased = [0usize; 2];
            for i in 0..PICKS_PER_ROUND * 2 {
                // A B B A A B ...: neither always goes first
                let which = ((i + task) / 2 + i) % 2;
                let (text, queue) = if which == 0 {
                    (current, "now")
                } else {
                    (before_text, "before")
                };
                let start = Instant::now();
                let query = sqlx::query(text)
                    .bind(queue)
                    .bind(0_i32)
                    .bind(Duration::from_secs(300))
                    .bind(true);
                // the current statement takes the lease owner too (schema 21)
                let query = if which == 0 {
                    query.bind(None::<i64>)
                } else {
                    query
                };
                let rows = query.fetch_all(&pool).await?;
                spent[which] += start.elapsed();
                leased[which] += rows
                    .iter()
                    .filter(|r| {
                        sqlx::Row::try_get::<Option<String>, _>(*r, 1)
                            .ok()
                            .flatten()
                            .is_some()
                    })
                    .count();
            }
            Ok::<_, sqlx::Error>((spent, leased))
        }
    })
    .await?;
    let rate = |w: usize| {
        let docs: usize = results.iter().map(|(_, l)| l[w]).sum();
        let secs: f64 = results.iter().map(|(s, _)| s[w].as_secs_f64()).sum();
        docs as f64 / secs * PICKERS as f64
    };
    Ok((rate(0), rate(1)))
}

/// The unlimited pick, schema 17 against the statement before rate limits.
async fn unlimited_cost(server: &Server) -> Result<Row, BoxError> {
    let (pool, _) = server.database("bench_rate_unlimited", 20).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    let per_round = PICKERS * PICKS_PER_ROUND * LIMIT;
    for q in ["now", "before"] {
        client.queue_create(q).await?;
        for chunk in super::docs(q, 0..per_round * (ROUNDS + 1)).chunks(5_000) {
            client.push_many(q, chunk).await?;
        }
    }
    // a limited queue beside them, as in a real database
    client.queue_create("limited").await?;
    client
        .queue_set_rate_limit("limited", Some(RateLimit::new(5, Duration::from_secs(1))?))
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    pick_round(&pool).await?; // warm-up
    let (mut now, mut before, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = pick_round(&pool).await?;
        eprintln!("  round {round}: schema 17 {a:.0} docs/s, before {b:.0} docs/s");
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
            "pick on an unlimited queue, {PICKERS} pickers, limit {LIMIT}: schema 17 vs the statement before rate limits"
        ),
        fetchq: median(&mut now),
        baseline: Some(median(&mut before)),
        unit: "docs/s",
        note: format!(
            "each picker alternates the two statements pick by pick; docs per second of each statement's own time, medians of {ROUNDS} rounds; median of the rounds' ratios {ratio:.3} (goal >= 0.97)"
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

/// A keyed queue of `per_key` due documents on each of 10 keys, every key
/// full (cap 2); returns ms per empty pick, median of `PICKS` picks.
async fn full_keys_pick(client: &Client, queue: &str, per_key: usize) -> Result<f64, BoxError> {
    const PICKS: usize = 300;
    client.queue_create(queue).await?;
    let docs: Vec<fetchq_core::NewDoc> = (0..10 * per_key)
        .map(|i| fetchq_core::NewDoc::new(format!("d{i:07}")).key(format!("host{}", i % 10)))
        .collect();
    for chunk in docs.chunks(5_000) {
        client.push_many(queue, chunk).await?;
    }
    client.queue_set_key_concurrency(queue, Some(2)).await?;
    sqlx::raw_sql(&format!("ANALYZE fetchq_data.{queue}__docs"))
        .execute(client.pool())
        .await?;
    let opts = fetchq_core::PickOptions::new().limit(10);
    // fill every key to its cap
    while !client.pick(queue, &opts).await?.is_empty() {}
    let mut times = Vec::with_capacity(PICKS);
    for _ in 0..PICKS {
        let start = Instant::now();
        let got = client.pick(queue, &opts).await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        if !got.is_empty() {
            return Err("a pick over full keys leased something".into());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(super::quantile(&times, 0.5))
}

/// Skipping full keys: 100,000 blocked documents against 100.
async fn full_keys(server: &Server) -> Result<Row, BoxError> {
    let (pool, _) = server.database("bench_keys", 4).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    let small = full_keys_pick(&client, "small", 10).await?;
    let big = full_keys_pick(&client, "big", 10_000).await?;
    pool.close().await;
    Ok(Row {
        workload: "empty pick over 10 full keys (cap 2): 100,000 due documents behind them vs 100"
            .into(),
        fetchq: big,
        baseline: Some(small),
        unit: "ms (median, lower is better)",
        note: "one index probe per key, never the documents behind a full key".into(),
    })
}

/// Every row.
pub(crate) async fn run(server: &Server) -> Result<Vec<Row>, BoxError> {
    eprintln!("rate limit: unlimited pick cost ...");
    let cost = unlimited_cost(server).await?;
    eprintln!("rate limit: a limited queue with 8 runtimes ...");
    let held = limited_holds(server, 50, 10).await?;
    eprintln!("key concurrency: picks over full keys ...");
    let keys = full_keys(server).await?;
    Ok(vec![cost, held, keys])
}
