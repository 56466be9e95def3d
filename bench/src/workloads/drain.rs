//! Drain: due documents through the real runtime, against SKIP LOCKED + DELETE.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::Client;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;
use sqlx::PgPool;

use super::{BoxError, run_clients};
use crate::Row;
use crate::server::Server;

struct NoOp {
    concurrency: usize,
}

#[async_trait]
impl Handler for NoOp {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("bench")
            .concurrency(self.concurrency)
            .batch(self.concurrency.min(100))
    }
    async fn handle(&self, _doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        Ok(Outcome::complete())
    }
}

async fn fill(client: &Client, docs: usize) -> Result<(), BoxError> {
    client.migrate().await?;
    client.queue_create("bench").await?;
    for chunk in super::docs("doc", 0..docs).chunks(1_000) {
        client.push_many("bench", chunk).await?;
    }
    Ok(())
}

/// N due documents drained by one runtime with a no-op handler (batched picks
/// and completions, completed documents kept), against 8 clients running
/// "pick 100 with SKIP LOCKED + DELETE" on a plain table.
pub(crate) async fn drain(
    server: &Server,
    docs: usize,
    concurrency: usize,
) -> Result<Row, BoxError> {
    eprintln!("drain: {docs} documents, concurrency {concurrency} ...");
    let (pool, _) = server.database("bench_drain", 40).await?;
    let client = Client::new(pool.clone());
    fill(&client, docs).await?;
    let runtime = Runtime::new(pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .register(NoOp { concurrency });
    let (stop, stats) = (runtime.shutdown_token(), runtime.stats());
    let start = Instant::now();
    let run = tokio::spawn(runtime.run());
    while stats.total().completed < docs as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    stop.cancel();
    run.await??;
    let rate = docs as f64 / elapsed.as_secs_f64();
    pool.close().await;

    let (baseline, _) = baseline_drain(server, docs).await?;
    Ok(Row {
        workload: format!("drain, concurrency {concurrency}"),
        fetchq: rate,
        baseline: Some(baseline),
        unit: "docs/s",
        note: format!("{docs} docs; baseline: 8 clients, pick 100 SKIP LOCKED + DELETE"),
    })
}

/// The same two statements per document without the runtime: 8 clients each
/// looping "pick 32, complete_many those 32" through `Client`. This is what
/// the engine allows with FetchQ's semantics (every document kept: two
/// UPDATEs where the baseline deletes once); the runtime's rows can be read
/// against it.
///
/// A second row counts the WAL each side writes per document: the cost of
/// the two row versions (and their index entries) against one deletion.
pub(crate) async fn ceiling(server: &Server, docs: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!("drain ceiling: {docs} documents, 8 client loops ...");
    let (pool, _) = server.database("bench_drain", 10).await?;
    let client = Client::new(pool.clone());
    fill(&client, docs).await?;
    let wal_start = wal_position(&pool).await?;
    let start = Instant::now();
    run_clients(8, |_| {
        let client = client.clone();
        async move {
            let pick = fetchq_core::PickOptions::new().limit(32);
            loop {
                let picked = client.pick("bench", &pick).await?;
                if picked.is_empty() {
                    return Ok::<(), fetchq_core::Error>(());
                }
                let items: Vec<_> = picked.into_iter().map(|d| (d.lease, None)).collect();
                client.complete_many("bench", &items).await?;
            }
        }
    })
    .await?;
    let rate = docs as f64 / start.elapsed().as_secs_f64();
    let wal = wal_since(&pool, &wal_start).await? / docs as f64;
    pool.close().await;

    let (baseline, baseline_wal) = baseline_drain(server, docs).await?;
    Ok(vec![
        Row {
            workload: "drain ceiling, no runtime: 8 loops of pick 32 + complete_many".into(),
            fetchq: rate,
            baseline: Some(baseline),
            unit: "docs/s",
            note: format!("{docs} docs; what the engine allows with two UPDATEs per document"),
        },
        Row {
            workload: "drain ceiling, WAL written per document".into(),
            fetchq: wal,
            baseline: Some(baseline_wal),
            unit: "bytes",
            note: "pg_current_wal_lsn before and after; includes the counters and anything else the server wrote".into(),
        },
    ])
}

/// The server's current WAL position.
async fn wal_position(pool: &PgPool) -> Result<String, BoxError> {
    Ok(sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await?)
}

/// WAL bytes written since `from` (a [`wal_position`]).
async fn wal_since(pool: &PgPool, from: &str) -> Result<f64, BoxError> {
    Ok(
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
            .bind(from)
            .fetch_one(pool)
            .await?,
    )
}

/// The baseline's rate, and the WAL bytes it wrote per job.
async fn baseline_drain(server: &Server, docs: usize) -> Result<(f64, f64), BoxError> {
    let (pool, _) = server.database("bench_baseline", 10).await?;
    sqlx::raw_sql("CREATE TABLE jobs (id bigserial PRIMARY KEY, payload jsonb NOT NULL);")
        .execute(&pool)
        .await?;
    super::fill_jobs(&pool, docs).await?;
    let wal_start = wal_position(&pool).await?;
    let start = Instant::now();
    run_clients(8, |_| {
            let pool = pool.clone();
            async move {
                loop {
                    let n = sqlx::query(
                        "WITH picked AS (SELECT id FROM jobs ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
                         DELETE FROM jobs USING picked WHERE jobs.id = picked.id",
                    )
                    .execute(&pool)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        return Ok::<(), sqlx::Error>(());
                    }
                }
            }
        })
    .await?;
    let rate = docs as f64 / start.elapsed().as_secs_f64();
    let wal = wal_since(&pool, &wal_start).await? / docs as f64;
    pool.close().await;
    Ok((rate, wal))
}
