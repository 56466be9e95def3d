//! A worker process for the multi-process tests. Configured by environment:
//! `DATABASE_URL`, `E2E_QUEUE` (default `e2e`), `E2E_CONCURRENCY` (16),
//! `E2E_BATCH` (16), `E2E_LEASE_MS` (5000), `E2E_WORK_MS` (0), `E2E_GRACE_MS`
//! (10000), `E2E_RESCUE_AFTER_MS` (30000; 0 turns the registration off),
//! `E2E_METRICS_ADDR` (unset: no metrics endpoint). Each handled
//! document is recorded in table `e2e_handled` (with its pick time on the
//! database's clock, the lease's expiry less its duration; timed as the queue's timer
//! `record`, counted in its custom counter `handled`), then completed. Prints
//! its counters as JSON on a clean exit.

use std::time::Duration;

use async_trait::async_trait;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Record {
    options: HandlerOptions,
    work: Duration,
    lease: Duration,
}

#[async_trait]
impl Handler for Record {
    type Payload = Value;

    fn options(&self) -> HandlerOptions {
        self.options.clone()
    }

    async fn handle(&self, doc: Doc<Value>, ctx: Context) -> Result<Outcome, HandlerError> {
        ctx.time(
            "record",
            sqlx::query(
                "INSERT INTO e2e_handled (subject, pid, token, leased_at) VALUES ($1, $2, $3, $4 - $5::interval)",
            )
            .bind(&doc.subject)
            .bind(i64::from(std::process::id()))
            .bind(ctx.lease().token)
            .bind(ctx.lease().expires_at)
            .bind(self.lease)
            .execute(ctx.client().pool()),
        )
        .await?;
        ctx.metric_increment("handled", 1)?;
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        Ok(Outcome::complete())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("fetchq-test-worker: set DATABASE_URL");
        return std::process::ExitCode::FAILURE;
    };
    let queue = std::env::var("E2E_QUEUE").unwrap_or_else(|_| "e2e".into());
    let concurrency = env_u64("E2E_CONCURRENCY", 16) as usize;
    let lease = Duration::from_millis(env_u64("E2E_LEASE_MS", 5000));
    let options = HandlerOptions::new(queue)
        .concurrency(concurrency)
        .batch(env_u64("E2E_BATCH", concurrency as u64) as usize)
        .lease(lease)
        .idle_poll(Duration::from_millis(200));
    let mut runtime = Runtime::new(url);
    if let Ok(addr) = std::env::var("E2E_METRICS_ADDR") {
        runtime = runtime.metrics_addr(addr);
    }
    let runtime = runtime
        .register(Record {
            options,
            work: Duration::from_millis(env_u64("E2E_WORK_MS", 0)),
            lease,
        })
        .shutdown_timeout(Duration::from_millis(env_u64("E2E_GRACE_MS", 10_000)))
        .maintenance(Some(Duration::from_millis(200)))
        .rescue_after(match env_u64("E2E_RESCUE_AFTER_MS", 30_000) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        });
    let stats = runtime.stats();
    match runtime.run().await {
        Ok(()) => {
            let t = stats.total();
            println!(
                "{}",
                serde_json::json!({"picked": t.picked, "completed": t.completed, "lease_lost": t.lease_lost, "released": t.released})
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fetchq-test-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
