//! Scale: pick+complete cost and counter reads with 10k to 10M documents in
//! the queue, mostly planned for the future (a crawler's shape). The baseline
//! of each size is the cost measured at the smallest size in the same run.

use std::time::Instant;

use fetchq_core::{Client, PickOptions};

use super::{BoxError, quantile};
use crate::Row;
use crate::server::Server;

/// Due documents at every size: enough for the measured cycles.
const DUE: i64 = 5_000;
const CYCLES: usize = 2_000;
const READS: usize = 500;

struct Measured {
    size: usize,
    cycle_ms: f64,
    read_ms: f64,
}

async fn measure(server: &Server, size: usize) -> Result<Measured, BoxError> {
    eprintln!("scale: loading {size} documents ...");
    let (pool, _) = server.database("bench_scale", 4).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    // loaded in one statement (the push path is measured elsewhere), then the
    // counters are set from a real count once
    sqlx::query(
        "INSERT INTO fetchq_data.bench__docs (subject, status, next_iteration, payload)
         SELECT 'doc-' || i, CASE WHEN i <= $2 THEN 1 ELSE 0 END,
                CASE WHEN i <= $2 THEN now() - interval '1 hour'
                     ELSE now() + (i % 43200) * interval '1 minute' END,
                jsonb_build_object('i', i)
         FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(size as i64)
    .bind(DUE.min(size as i64))
    .execute(&pool)
    .await?;
    client.metric_reset("bench").await?;
    // the load wrote as much WAL as the table holds: checkpoint now, so that
    // no size is measured while a checkpoint it triggered flushes the disk
    for step in ["VACUUM ANALYZE fetchq_data.bench__docs", "CHECKPOINT"] {
        sqlx::raw_sql(step).execute(&pool).await?;
    }
    eprintln!("scale: measuring at {size} ...");
    let mut cycles = Vec::with_capacity(CYCLES);
    let pick = PickOptions::new()
        .limit(1)
        .lease(std::time::Duration::from_secs(60));
    for _ in 0..CYCLES {
        let start = Instant::now();
        if let Some(doc) = client.pick("bench", &pick).await?.pop() {
            client.complete(&doc.lease, None).await?;
        }
        cycles.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut reads = Vec::with_capacity(READS);
    for _ in 0..READS {
        let start = Instant::now();
        client.metric_get_common("bench").await?;
        reads.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    cycles.sort_by(f64::total_cmp);
    reads.sort_by(f64::total_cmp);
    pool.close().await;
    Ok(Measured {
        size,
        cycle_ms: quantile(&cycles, 0.5),
        read_ms: quantile(&reads, 0.5),
    })
}

pub(crate) async fn run(server: &Server, sizes: &[usize]) -> Result<Vec<Row>, BoxError> {
    let mut measured = Vec::new();
    for &size in sizes {
        measured.push(measure(server, size).await?);
    }
    let Some(first) = measured.first() else {
        return Ok(Vec::new());
    };
    let (base_cycle, base_read) = (first.cycle_ms, first.read_ms);
    let mut rows = Vec::new();
    for m in &measured {
        rows.push(Row {
            workload: format!("pick+complete p50 at {} docs", m.size),
            fetchq: m.cycle_ms,
            baseline: Some(base_cycle),
            unit: "ms",
            note: format!(
                "one client, limit 1; baseline: the same at {} docs",
                first.size
            ),
        });
    }
    if let Some(last) = measured.last() {
        rows.push(Row {
            workload: format!("metric_get_common p50 at {} docs", last.size),
            fetchq: last.read_ms,
            baseline: Some(base_read),
            unit: "ms",
            note: format!("O(1) read; baseline: the same at {} docs", first.size),
        });
    }
    Ok(rows)
}
