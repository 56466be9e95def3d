//! Past one PostgreSQL, the cheapest split measured: two databases on the
//! same cluster, each with its own queue set, drained by one process holding
//! two runtimes (one client per database), against one database holding both
//! queue sets drained by one runtime. Same handlers (4 queues, no-op,
//! concurrency 16 each), same total connections (20 against 10 + 10), same
//! documents; the cluster, its WAL and its CPUs are shared, so this measures
//! what the split itself costs or saves, not added hardware.
//!
//! Pick latency is the runtimes' own `fetchq_worker_pick_duration_seconds`
//! histogram (scraped from their metrics endpoints, summed, quantiles
//! interpolated within buckets).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::Client;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;

use super::BoxError;
use super::soak::{histogram_quantile, scrape_picks};
use crate::Row;
use crate::server::Server;

const SET_A: [&str; 2] = ["two_a1", "two_a2"];
const SET_B: [&str; 2] = ["two_b1", "two_b2"];

struct NoOp {
    queue: &'static str,
}

#[async_trait]
impl Handler for NoOp {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new(self.queue).concurrency(16).batch(16)
    }
    async fn handle(&self, _doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        Ok(Outcome::complete())
    }
}

/// One round's numbers.
struct Round {
    push_per_s: f64,
    drain_per_s: f64,
    pick_p50_ms: f64,
    pick_p99_ms: f64,
}

/// Creates the queues on `client`'s database.
async fn setup(client: &Client, queues: &[&'static str]) -> Result<(), BoxError> {
    client.migrate().await?;
    for q in queues {
        client.queue_create(q).await?;
    }
    Ok(())
}

/// Pushes `docs` into each queue, one task per queue; returns docs/s.
async fn fill(targets: &[(Client, &'static str)], docs: usize) -> Result<f64, BoxError> {
    let start = Instant::now();
    let tasks: Vec<_> = targets
        .iter()
        .map(|(client, q)| {
            let (client, q) = (client.clone(), *q);
            tokio::spawn(async move {
                for chunk in super::docs(q, 0..docs).chunks(1_000) {
                    client.push_many(q, chunk).await?;
                }
                Ok::<(), fetchq_core::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((targets.len() * docs) as f64 / start.elapsed().as_secs_f64())
}

/// Runs one runtime per `(url, queues, connections)` in this process until
/// `total` documents are completed; returns docs/s and the summed pick
/// histogram.
async fn drain(
    runtimes: Vec<(String, Vec<&'static str>, u32)>,
    total: u64,
) -> Result<(f64, Vec<f64>), BoxError> {
    let mut ports = Vec::new();
    let mut stops = Vec::new();
    let mut stats = Vec::new();
    let mut runs = Vec::new();
    let start = Instant::now();
    for (url, queues, connections) in runtimes {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        ports.push(listener.local_addr()?.port());
        let mut runtime = Runtime::new(url)
            .handle_signals(false)
            .maintenance(None)
            .max_connections(connections)
            .metrics_listener(listener);
        for queue in queues {
            runtime = runtime.register(NoOp { queue });
        }
        stops.push(runtime.shutdown_token());
        stats.push(runtime.stats());
        runs.push(tokio::spawn(runtime.run()));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.iter().map(|s| s.total().completed).sum::<u64>() < total {
        if Instant::now() > deadline {
            return Err("two-databases: the drain did not finish in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    let mut picks: Vec<f64> = Vec::new();
    for port in ports {
        let counts = scrape_picks(&http, port)
            .await
            .ok_or("two-databases: could not scrape a runtime's metrics")?;
        if picks.is_empty() {
            picks = counts;
        } else {
            for (a, b) in picks.iter_mut().zip(&counts) {
                *a += b;
            }
        }
    }
    for s in stops {
        s.cancel();
    }
    for r in runs {
        r.await??;
    }
    Ok((rate, picks))
}

async fn one_database(server: &Server, docs: usize) -> Result<Round, BoxError> {
    let (pool, url) = server.database("bench_two_one", 4).await?;
    let client = Client::new(pool.clone());
    let queues: Vec<&'static str> = SET_A.iter().chain(&SET_B).copied().collect();
    setup(&client, &queues).await?;
    let targets: Vec<_> = queues.iter().map(|q| (client.clone(), *q)).collect();
    let push_per_s = fill(&targets, docs).await?;
    let (drain_per_s, picks) = drain(vec![(url, queues, 20)], 4 * docs as u64).await?;
    pool.close().await;
    server.drop_database("bench_two_one").await?;
    Ok(Round {
        push_per_s,
        drain_per_s,
        pick_p50_ms: histogram_quantile(&picks, 0.5),
        pick_p99_ms: histogram_quantile(&picks, 0.99),
    })
}

async fn two_databases(server: &Server, docs: usize) -> Result<Round, BoxError> {
    let (pool_x, url_x) = server.database("bench_two_x", 4).await?;
    let (pool_y, url_y) = server.database("bench_two_y", 4).await?;
    let (x, y) = (Client::new(pool_x.clone()), Client::new(pool_y.clone()));
    setup(&x, &SET_A).await?;
    setup(&y, &SET_B).await?;
    let targets: Vec<_> = SET_A
        .iter()
        .map(|q| (x.clone(), *q))
        .chain(SET_B.iter().map(|q| (y.clone(), *q)))
        .collect();
    let push_per_s = fill(&targets, docs).await?;
    let (drain_per_s, picks) = drain(
        vec![(url_x, SET_A.to_vec(), 10), (url_y, SET_B.to_vec(), 10)],
        4 * docs as u64,
    )
    .await?;
    pool_x.close().await;
    pool_y.close().await;
    server.drop_database("bench_two_x").await?;
    server.drop_database("bench_two_y").await?;
    Ok(Round {
        push_per_s,
        drain_per_s,
        pick_p50_ms: histogram_quantile(&picks, 0.5),
        pick_p99_ms: histogram_quantile(&picks, 0.99),
    })
}

fn mean(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    rounds.iter().map(f).sum::<f64>() / rounds.len().max(1) as f64
}

fn each(rounds: &[Round], f: impl Fn(&Round) -> f64) -> String {
    rounds
        .iter()
        .map(|r| format!("{:.1}", f(r)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rounds` alternating rounds of each layout, `docs` documents per queue.
pub(crate) async fn run(server: &Server, docs: usize, rounds: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!(
        "two databases: 4 queues x {docs} docs, one database vs two, {rounds} rounds each ..."
    );
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        let a = one_database(server, docs).await?;
        eprintln!(
            "  round {round}, one database: push {:.0}/s, drain {:.0}/s, pick p50 {:.2} ms p99 {:.2} ms",
            a.push_per_s, a.drain_per_s, a.pick_p50_ms, a.pick_p99_ms
        );
        one.push(a);
        let b = two_databases(server, docs).await?;
        eprintln!(
            "  round {round}, two databases: push {:.0}/s, drain {:.0}/s, pick p50 {:.2} ms p99 {:.2} ms",
            b.push_per_s, b.drain_per_s, b.pick_p50_ms, b.pick_p99_ms
        );
        two.push(b);
    }
    let row = |name: &str, unit: &'static str, f: &dyn Fn(&Round) -> f64| Row {
        workload: format!("two databases: {name}"),
        fetchq: mean(&two, f),
        baseline: Some(mean(&one, f)),
        unit,
        note: format!(
            "two databases, 2 runtimes x 10 conns [{}] vs one, 1 runtime x 20 [{}]",
            each(&two, f),
            each(&one, f)
        ),
    };
    Ok(vec![
        row("push, 4 tasks x batches of 1,000", "docs/s", &|r| {
            r.push_per_s
        }),
        row("drain, 4 no-op handlers x 16", "docs/s", &|r| r.drain_per_s),
        row("pick p50 while draining", "ms", &|r| r.pick_p50_ms),
        row("pick p99 while draining", "ms", &|r| r.pick_p99_ms),
    ])
}
