//! Resident memory of a worker process: idle, and while draining at full
//! speed. The baseline is a bare process holding the same connection pool.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::Client;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;

use super::BoxError;
use crate::Row;
use crate::server::Server;

struct NoOp;

#[async_trait]
impl Handler for NoOp {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("bench").concurrency(32).batch(32)
    }
    async fn handle(&self, _doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        Ok(Outcome::complete())
    }
}

/// The child process: `bare` holds a pool and idles; otherwise a worker runs.
pub(crate) async fn child(url: &str, bare: bool) -> Result<(), BoxError> {
    if bare {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(20)
            .connect(url)
            .await?;
        sqlx::query("SELECT 1").execute(&pool).await?;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    }
    Runtime::new(url).register(NoOp).run().await?;
    Ok(())
}

/// Resident set size of a process, in MB (from /proc).
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

fn spawn(url: &str, bare: bool) -> Result<Child, BoxError> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["child", "--url", url]);
    if bare {
        cmd.arg("--bare");
    }
    Ok(cmd.spawn()?)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

pub(crate) async fn run(server: &Server, docs: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!("footprint: idle and draining worker processes ...");
    let (pool, url) = server.database("bench_footprint", 4).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;

    let bare = spawn(&url, true)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bare_mb = rss_mb(bare.id());
    stop(bare);

    let worker = spawn(&url, false)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_mb = rss_mb(worker.id());
    for chunk in super::docs("f", 0..docs).chunks(1_000) {
        client.push_many("bench", chunk).await?;
    }
    let mut peak: f64 = 0.0;
    let start = Instant::now();
    while client.metric_compute("bench").await?.completed < docs as i64
        && start.elapsed() < Duration::from_secs(120)
    {
        peak = peak.max(rss_mb(worker.id()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(worker);
    pool.close().await;
    Ok(vec![
        Row {
            workload: "worker RSS, idle".into(),
            fetchq: idle_mb,
            baseline: Some(bare_mb),
            unit: "MB",
            note: "baseline: a bare process holding a 20-connection pool".into(),
        },
        Row {
            workload: "worker RSS, draining".into(),
            fetchq: peak,
            baseline: Some(bare_mb),
            unit: "MB",
            note: format!("peak while draining {docs} docs at concurrency 32"),
        },
    ])
}
