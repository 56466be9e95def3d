//! The repetitive-task pattern sustained: pick, reschedule one second later.
//! Throughput, and the table's size before and after (bloat under churn).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::Client;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;
use sqlx::PgPool;

use super::{BoxError, run_clients};
use crate::Row;
use crate::server::Server;

struct Again;

#[async_trait]
impl Handler for Again {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("bench").concurrency(32).batch(32)
    }
    async fn handle(&self, _doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        Ok(Outcome::reschedule_in(Duration::from_secs(1)))
    }
}

async fn size(pool: &PgPool, table: &str) -> Result<i64, BoxError> {
    Ok(
        sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
            .bind(table)
            .fetch_one(pool)
            .await?,
    )
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1_048_576.0
}

pub(crate) async fn run(server: &Server, docs: usize, seconds: u64) -> Result<Vec<Row>, BoxError> {
    eprintln!("reschedule loop: {docs} documents for {seconds} s ...");
    let (pool, _) = server.database("bench_reschedule", 40).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    for chunk in super::docs("r", 0..docs).chunks(1_000) {
        client.push_many("bench", chunk).await?;
    }
    sqlx::raw_sql("VACUUM ANALYZE fetchq_data.bench__docs")
        .execute(&pool)
        .await?;
    let before = size(&pool, "fetchq_data.bench__docs").await?;
    let runtime = Runtime::new(pool.clone())
        .handle_signals(false)
        .register(Again);
    let (stop, stats) = (runtime.shutdown_token(), runtime.stats());
    let run = tokio::spawn(runtime.run());
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let done = stats.total().rescheduled;
    let elapsed = start.elapsed();
    stop.cancel();
    run.await??;
    let after = size(&pool, "fetchq_data.bench__docs").await?;
    let fetchq = done as f64 / elapsed.as_secs_f64();

    // baseline: the same loop on a plain table
    sqlx::raw_sql(
        "CREATE TABLE jobs (id bigserial PRIMARY KEY, run_at timestamptz NOT NULL DEFAULT now(),
                            payload jsonb NOT NULL DEFAULT '{}');
         CREATE INDEX jobs_run_at ON jobs (run_at);",
    )
    .execute(&pool)
    .await?;
    super::fill_jobs(&pool, docs).await?;
    let base_before = size(&pool, "jobs").await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let base_done: u64 = run_clients(8, |_| {
            let pool = pool.clone();
            async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let picked: Vec<i64> = sqlx::query_scalar(
                        "WITH p AS (SELECT id FROM jobs WHERE run_at <= now() ORDER BY run_at LIMIT 32 FOR UPDATE SKIP LOCKED)
                         UPDATE jobs SET run_at = now() + interval '1 minute' FROM p WHERE jobs.id = p.id RETURNING jobs.id",
                    )
                    .fetch_all(&pool)
                    .await?;
                    if picked.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    sqlx::query("UPDATE jobs SET run_at = now() + interval '1 second' WHERE id = ANY($1)")
                        .bind(&picked)
                        .execute(&pool)
                        .await?;
                    n += picked.len() as u64;
                }
                Ok::<u64, sqlx::Error>(n)
            }
        })
    .await?
    .into_iter()
    .sum();
    let baseline = base_done as f64 / start.elapsed().as_secs_f64();
    let base_after = size(&pool, "jobs").await?;
    pool.close().await;
    Ok(vec![
        Row {
            workload: format!("reschedule loop, {docs} docs, {seconds} s"),
            fetchq,
            baseline: Some(baseline),
            unit: "docs/s",
            note: "baseline: 8 clients, pick 32 SKIP LOCKED (lease via run_at), then UPDATE run_at"
                .into(),
        },
        Row {
            workload: "reschedule loop, table growth".into(),
            fetchq: mb(after) / mb(before).max(0.001),
            baseline: Some(mb(base_after) / mb(base_before).max(0.001)),
            unit: "x size",
            note: format!(
                "fetchq {:.1} -> {:.1} MB; baseline {:.1} -> {:.1} MB",
                mb(before),
                mb(after),
                mb(base_before),
                mb(base_after)
            ),
        },
    ])
}
