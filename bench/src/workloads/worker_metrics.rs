//! The cost of the worker's process metrics (feature `metrics`,
//! `Runtime::metrics_listener`): the same drain with them on (scraped every
//! second, as Prometheus would) and off, alternated over several rounds.

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
const ROUNDS: usize = 5;

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

/// One drain of `docs` documents; returns docs/s.
async fn drain_once(server: &Server, docs: usize, metrics: bool) -> Result<f64, BoxError> {
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
    if let Some(s) = scraper {
        s.abort();
    }
    stop.cancel();
    run.await??;
    pool.close().await;
    Ok(docs as f64 / elapsed.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    super::quantile(&v, 0.5)
}

/// The drain (concurrency 32, no-op handler) with the worker's metrics on
/// against off: the ratio is the throughput kept (target: at least 0.95).
pub(crate) async fn run(server: &Server, docs: usize) -> Result<Row, BoxError> {
    eprintln!("worker metrics: {docs} documents, {ROUNDS} rounds of on and off ...");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // alternate which goes first, so a warming cache favours neither
        for metrics in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let rate = drain_once(server, docs, metrics).await?;
            eprintln!(
                "  round {round}, metrics {}: {rate:.0} docs/s",
                if metrics { "on" } else { "off" }
            );
            if metrics {
                on.push(rate)
            } else {
                off.push(rate)
            }
        }
    }
    let ratios: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    let rounded = |v: &[f64]| v.iter().map(|r| r.round()).collect::<Vec<_>>();
    let note = format!(
        "{docs} docs; medians of {ROUNDS} alternated rounds; median of the rounds' ratios {:.3}; on {:?}, off {:?}",
        median(ratios),
        rounded(&on),
        rounded(&off)
    );
    Ok(Row {
        workload: "drain, concurrency 32, worker metrics on (scraped every 1 s) vs off".into(),
        fetchq: median(on),
        baseline: Some(median(off)),
        unit: "docs/s",
        note,
    })
}
