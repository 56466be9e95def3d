//! The cost of the worker's process metrics (feature `metrics`,
//! `Runtime::metrics_listener`): the same drain with them on (scraped every
//! second, as Prometheus would) and off, alternated over several rounds.
//! Two rows: throughput (noisy on a shared host: PostgreSQL's share of the
//! two cores decides it), and this process's own CPU time per document (its
//! threads' time on a CPU), which is what the metrics add to.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::Client;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;

use super::BoxError;
use crate::Row;
use crate::server::Server;

/// Rounds of each (on, off), alternated; the median of each is reported, and
/// the median of the rounds' ratios (a shared host's drift hits both halves of
/// a round alike).
const ROUNDS: usize = 9;

const CONCURRENCY: usize = 32;

struct NoOp;

#[async_trait]
impl Handler for NoOp {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("bench")
            .concurrency(CONCURRENCY)
            .batch(CONCURRENCY)
    }
    async fn handle(&self, _doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        Ok(Outcome::complete())
    }
}

/// This process's CPU time so far (every thread, user and system), in
/// seconds, from `CLOCK_PROCESS_CPUTIME_ID` (`/proc` counts in 10 ms ticks,
/// too coarse for a drain of a second or two).
fn cpu_seconds() -> Result<f64, BoxError> {
    Ok(cpu_time::ProcessTime::try_now()?
        .as_duration()
        .as_secs_f64())
}

/// One drain of `docs` documents; returns (docs/s, CPU µs of this process per document).
async fn drain_once(server: &Server, docs: usize, metrics: bool) -> Result<(f64, f64), BoxError> {
    let (pool, _) = server.database("bench_worker_metrics", 40).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    for chunk in super::docs("doc", 0..docs).chunks(1_000) {
        client.push_many("bench", chunk).await?;
    }
    let mut runtime = Runtime::new(pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .register(NoOp);
    let mut scrape_url = None;
    if metrics {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        scrape_url = Some(format!("http://{}/metrics", listener.local_addr()?));
        runtime = runtime.metrics_listener(listener);
    }
    let (stop, stats) = (runtime.shutdown_token(), runtime.stats());
    let cpu_start = cpu_seconds()?;
    let start = Instant::now();
    let run = tokio::spawn(runtime.run());
    // scraped every second while it drains, as Prometheus would
    let scraper = scrape_url.map(|url| {
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                if let Ok(r) = http.get(&url).send().await {
                    let _ = r.text().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    while stats.total().completed < docs as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_seconds()? - cpu_start;
    if let Some(s) = scraper {
        s.abort();
    }
    stop.cancel();
    run.await??;
    pool.close().await;
    Ok((docs as f64 / elapsed.as_secs_f64(), cpu * 1e6 / docs as f64))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    super::quantile(&v, 0.5)
}

/// The drain (concurrency 32, no-op handler) with the worker's metrics on
/// against off: the throughput kept (target: at least 0.95), and the CPU
/// time this process spends per document.
pub(crate) async fn run(server: &Server, docs: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!("worker metrics: {docs} documents, {ROUNDS} rounds of on and off ...");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let (mut cpu_on, mut cpu_off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // alternate which goes first, so a warming cache favours neither
        for metrics in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let (rate, cpu) = drain_once(server, docs, metrics).await?;
            eprintln!(
                "  round {round}, metrics {}: {rate:.0} docs/s, {cpu:.1} µs CPU/doc",
                if metrics { "on" } else { "off" }
            );
            if metrics {
                on.push(rate);
                cpu_on.push(cpu);
            } else {
                off.push(rate);
                cpu_off.push(cpu);
            }
        }
    }
    let ratios: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    let rounded = |v: &[f64]| v.iter().map(|r| r.round()).collect::<Vec<_>>();
    let tenths = |v: &[f64]| {
        v.iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    };
    let note = format!(
        "{docs} docs; medians of {ROUNDS} alternated rounds; median of the rounds' ratios {:.3}; on {:?}, off {:?}",
        median(ratios),
        rounded(&on),
        rounded(&off)
    );
    let cpu_note = format!(
        "this process (runtime and scraper), CPU time from CLOCK_PROCESS_CPUTIME_ID; medians of {ROUNDS} rounds; on {:?}, off {:?}",
        tenths(&cpu_on),
        tenths(&cpu_off)
    );
    Ok(vec![
        Row {
            workload: "drain, concurrency 32, worker metrics on (scraped every 1 s) vs off".into(),
            fetchq: median(on),
            baseline: Some(median(off)),
            unit: "docs/s",
            note,
        },
        Row {
            workload: "worker CPU per document, metrics on vs off (lower is better)".into(),
            fetchq: median(cpu_on),
            baseline: Some(median(cpu_off)),
            unit: "µs",
            note: cpu_note,
        },
    ])
}
