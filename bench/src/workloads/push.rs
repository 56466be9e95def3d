//! Pushing: one document per call from 8 clients, and batches of 1,000
//! (fresh subjects, and half duplicates), each against plain INSERTs.
//!
//! fetchq and its baseline take turns, a quarter of the work each time, so a
//! change in the host's load during the run weighs on both sides alike.

use std::time::{Duration, Instant};

use fetchq_core::Client;
use sqlx::PgPool;

use super::{BoxError, docs, run_clients};
use crate::Row;
use crate::server::Server;

const CLIENTS: usize = 8;
/// Turns each side takes.
const ROUNDS: usize = 4;

async fn plain_table(pool: &PgPool) -> Result<(), BoxError> {
    sqlx::raw_sql(
        "CREATE TABLE jobs (subject text PRIMARY KEY, priority int NOT NULL DEFAULT 0,
                            run_at timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// 8 clients each running `statement` with ($1 subject, $2 payload) for their
/// share of `total` rows, subjects starting with `prefix`; returns the time.
async fn one_row_per_call(
    pool: &PgPool,
    statement: &'static str,
    prefix: &str,
    total: usize,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    run_clients(CLIENTS, |c| {
        let pool = pool.clone();
        let prefix = format!("{prefix}c{c}");
        async move {
            for i in 0..total / CLIENTS {
                sqlx::query(statement)
                    .bind(format!("{prefix}-{i:09}"))
                    .bind(serde_json::json!({"i": i}))
                    .execute(&pool)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
    })
    .await?;
    Ok(start.elapsed())
}

/// 8 clients, one push per call, against 8 clients of single-row INSERTs:
/// through `Client::push` (the per-queue statement), and through the SQL
/// function `fetchq.doc_push` as psql or another language would call it.
pub(crate) async fn single(server: &Server, total: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!("push-single: {total} documents from {CLIENTS} clients ...");
    let (pool, _) = server
        .database("bench_push_single", CLIENTS as u32 + 2)
        .await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    client.queue_create("bench_sql").await?;
    plain_table(&pool).await?;
    let share = total / ROUNDS;
    let (mut fetchq, mut function, mut baseline) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let start = Instant::now();
        run_clients(CLIENTS, |c| {
            let client = client.clone();
            async move {
                for doc in docs(&format!("r{round}c{c}"), 0..share / CLIENTS) {
                    client.push("bench", &doc).await?;
                }
                Ok::<(), fetchq_core::Error>(())
            }
        })
        .await?;
        fetchq += start.elapsed();
        let prefix = format!("r{round}");
        function += one_row_per_call(
            &pool,
            "SELECT fetchq.doc_push('bench_sql', $1, 0, 0, now(), $2)",
            &prefix,
            share,
        )
        .await?;
        baseline += one_row_per_call(
            &pool,
            "INSERT INTO jobs (subject, payload) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &prefix,
            share,
        )
        .await?;
    }
    let rate = |took: Duration| (share / CLIENTS * CLIENTS * ROUNDS) as f64 / took.as_secs_f64();
    let (fetchq, function, baseline) = (rate(fetchq), rate(function), rate(baseline));
    pool.close().await;
    Ok(vec![
        Row {
            workload: "push-single, 8 clients, Client::push".into(),
            fetchq,
            baseline: Some(baseline),
            unit: "docs/s",
            note: "baseline: single-row INSERT ... ON CONFLICT DO NOTHING; 4 turns each".into(),
        },
        Row {
            workload: "push-single, 8 clients, SQL function fetchq.doc_push".into(),
            fetchq: function,
            baseline: Some(baseline),
            unit: "docs/s",
            note: "the same, as psql or another language calls it".into(),
        },
    ])
}

/// Batches of 1,000 through `Client::push_many` from 4 clients; with `duplicates`,
/// every batch repeats 500 subjects already pushed.
pub(crate) async fn bulk(server: &Server, total: usize, duplicates: bool) -> Result<Row, BoxError> {
    let label = if duplicates {
        "push-bulk, 50% duplicates"
    } else {
        "push-bulk"
    };
    eprintln!("{label}: {total} documents in batches of 1,000 ...");
    let (pool, _) = server.database("bench_push_bulk", 8).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    // the batches: fresh halves plus (optionally) halves seen before
    let fresh = docs("d", 0..total);
    let batches: Vec<Vec<fetchq_core::NewDoc>> = if duplicates {
        fresh
            .chunks(500)
            .enumerate()
            .map(|(i, half)| {
                let mut batch = half.to_vec();
                let seen = if i == 0 {
                    half
                } else {
                    &fresh[(i - 1) * 500..i * 500]
                };
                batch.extend_from_slice(seen);
                batch
            })
            .collect()
    } else {
        fresh.chunks(1_000).map(<[_]>::to_vec).collect()
    };
    let sent: usize = batches.iter().map(Vec::len).sum();
    plain_table(&pool).await?;
    let per_round = batches.len().div_ceil(ROUNDS);
    let (mut fetchq, mut baseline) = (Duration::ZERO, Duration::ZERO);
    for round in batches.chunks(per_round.max(1)) {
        let round = std::sync::Arc::new(round.to_vec());
        let start = Instant::now();
        run_clients(4, |c| {
            let (client, batches) = (client.clone(), round.clone());
            async move {
                for batch in batches.iter().skip(c).step_by(4) {
                    client.push_many("bench", batch).await?;
                }
                Ok::<(), fetchq_core::Error>(())
            }
        })
        .await?;
        fetchq += start.elapsed();
        let start = Instant::now();
        run_clients(4, |c| {
            let (pool, batches) = (pool.clone(), round.clone());
            async move {
                for batch in batches.iter().skip(c).step_by(4) {
                    let subjects: Vec<&str> = batch.iter().map(|d| d.subject()).collect();
                    sqlx::query(
                        "INSERT INTO jobs (subject, payload)
                         SELECT s, jsonb_build_object('s', s) FROM unnest($1::text[]) AS s ON CONFLICT DO NOTHING",
                    )
                    .bind(subjects)
                    .execute(&pool)
                    .await?;
                }
                Ok::<(), sqlx::Error>(())
            }
        })
        .await?;
        baseline += start.elapsed();
    }
    let fetchq = sent as f64 / fetchq.as_secs_f64();
    let baseline = sent as f64 / baseline.as_secs_f64();
    let counters = {
        client.metric_log_pack().await?;
        client.metric_get_common("bench").await?
    };
    let exact = counters.total as usize == total;
    pool.close().await;
    Ok(Row {
        workload: label.into(),
        fetchq,
        baseline: Some(baseline),
        unit: "docs/s sent",
        note: format!(
            "4 clients, 4 turns each; baseline: 1,000-row INSERT ... ON CONFLICT DO NOTHING; counters exact: {exact}"
        ),
    })
}
