//! The web console on a big queue: p95 answer time of each page at
//! `--console-docs` documents (default 10M) against the same page at 10k in
//! the same run. Goal: every page under 200 ms at p95 at 10M.
//!
//! The queue has a crawler's shape: most documents planned for later, many
//! completed, some pending, a few leased and a few dead.

use std::time::Instant;

use fetchq_core::Client;

use super::http::{Api, TOKEN_SECRET, finish};
use super::{BoxError, quantile};
use crate::Row;
use crate::server::Server;

const SMALL: usize = 10_000;
const REQUESTS: usize = 100;

/// The pages measured (path under the queue `bench`, label).
const PAGES: [(&str, &str); 10] = [
    ("/", "overview"),
    ("/console/queues/bench", "queue page"),
    ("/console/queues/bench/docs", "documents, no filter"),
    (
        "/console/queues/bench/docs?after=doc-000500000",
        "documents, a later page",
    ),
    (
        "/console/queues/bench/docs?status=pending",
        "documents, pending (1%)",
    ),
    (
        "/console/queues/bench/docs?status=active",
        "documents, active (rare)",
    ),
    (
        "/console/queues/bench/docs?status=dead",
        "documents, dead (rare)",
    ),
    (
        "/console/queues/bench/docs?status=completed",
        "documents, completed (35%)",
    ),
    (
        "/console/queues/bench/docs?prefix=doc-0000123",
        "documents, subject prefix",
    ),
    (
        "/console/queues/bench/doc?subject=doc-000000042",
        "one document",
    ),
];

async fn load(server: &Server, size: usize) -> Result<(sqlx::PgPool, Client), BoxError> {
    eprintln!("console: loading {size} documents ...");
    let (pool, _) = server.database("bench_console", 8).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    client.queue_create("other").await?;
    // status by i: every 100th pending, every 10,000th (+1) leased, every
    // 20,000th (+2) dead, 35% completed, the rest planned
    sqlx::query(
        "INSERT INTO fetchq_data.bench__docs (subject, status, next_iteration, iterations, payload)
         SELECT 'doc-' || lpad(i::text, 9, '0'), s,
                CASE s WHEN 0 THEN now() + (i % 43200) * interval '1 minute'
                       WHEN 2 THEN now() + interval '5 minutes'
                       ELSE now() - (i % 600) * interval '1 second' END,
                CASE s WHEN 3 THEN 1 ELSE 0 END,
                jsonb_build_object('url', 'https://example.com/' || i, 'depth', i % 5)
         FROM (SELECT i, CASE WHEN i % 100 = 0 THEN 1 WHEN i % 10000 = 1 THEN 2
                              WHEN i % 20000 = 2 THEN -1 WHEN i % 100 < 36 THEN 3 ELSE 0 END AS s
               FROM generate_series(1, $1::bigint) AS i) AS g",
    )
    .bind(size as i64)
    .execute(&pool)
    .await?;
    client.metric_reset("bench").await?;
    for step in ["VACUUM ANALYZE fetchq_data.bench__docs", "CHECKPOINT"] {
        sqlx::raw_sql(step).execute(&pool).await?;
    }
    // some history for the queue page's charts
    for _ in 0..3 {
        client.metric_snap("bench").await?;
    }
    Ok((pool, client))
}

/// p95 ms of each page.
async fn measure(server: &Server, size: usize) -> Result<Vec<f64>, BoxError> {
    let (pool, client) = load(server, size).await?;
    let api = std::sync::Arc::new(Api::start(client).await?);
    let cookie: String = TOKEN_SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    let mut out = Vec::new();
    for (path, label) in PAGES {
        let url = format!("{}{path}", api.base);
        let mut times = Vec::with_capacity(REQUESTS);
        for i in 0..REQUESTS + 5 {
            let start = Instant::now();
            let res = api
                .http
                .get(&url)
                .header("accept", "text/html")
                .header("cookie", format!("fetchq_session={cookie}"))
                .send()
                .await?;
            let status = res.status();
            let body = res.text().await?;
            if !status.is_success() || !body.contains("<main>") {
                return Err(format!("{label}: {status}").into());
            }
            if i >= 5 {
                times.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "console: {size} docs, {label}: p50 {:.1} ms, p95 {:.1} ms",
            quantile(&times, 0.5),
            quantile(&times, 0.95)
        );
        out.push(quantile(&times, 0.95));
    }
    finish(api).await;
    pool.close().await;
    Ok(out)
}

pub(crate) async fn run(server: &Server, big: usize) -> Result<Vec<Row>, BoxError> {
    let small = measure(server, SMALL.min(big)).await?;
    let large = measure(server, big).await?;
    Ok(PAGES
        .iter()
        .zip(small.iter().zip(&large))
        .map(|((_, label), (s, l))| Row {
            workload: format!("console {label}, p95 at {big} docs"),
            fetchq: *l,
            baseline: Some(*s),
            unit: "ms",
            note: format!(
                "baseline: the same page at {} docs; goal < 200 ms",
                SMALL.min(big)
            ),
        })
        .collect())
}
