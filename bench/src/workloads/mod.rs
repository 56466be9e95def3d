//! The workloads, each next to its plain-SQL baseline.

pub(crate) mod backup;
pub(crate) mod big;
pub(crate) mod console;
pub(crate) mod drain;
pub(crate) mod footprint;
pub(crate) mod http;
pub(crate) mod latency;
pub(crate) mod pgbouncer;
pub(crate) mod push;
pub(crate) mod rate_limit;
pub(crate) mod reschedule;
pub(crate) mod scale;
pub(crate) mod soak;
pub(crate) mod two_databases;
pub(crate) mod worker_metrics;

pub(crate) type BoxError = Box<dyn std::error::Error>;

/// The `p` quantile (0..=1) of sorted samples.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Documents `prefix-<i>` for i in `range`, with a small payload.
pub(crate) fn docs(prefix: &str, range: std::ops::Range<usize>) -> Vec<fetchq_core::NewDoc> {
    range
        .map(|i| {
            fetchq_core::NewDoc::new(format!("{prefix}-{i:09}"))
                .payload(serde_json::json!({"i": i}))
        })
        .collect()
}

/// Runs `clients` tasks at once (`task(i)` for client i) and waits for all of
/// them; the first error ends the workload. Returns each client's result.
pub(crate) async fn run_clients<T, E, F, Fut>(clients: usize, task: F) -> Result<Vec<T>, BoxError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let handles: Vec<_> = (0..clients).map(|i| tokio::spawn(task(i))).collect();
    let mut results = Vec::with_capacity(clients);
    for handle in handles {
        results.push(handle.await??);
    }
    Ok(results)
}

/// Fills a baseline's plain `jobs` table (created by the caller, with a
/// `payload` column and defaults for the rest) with `rows` rows, then
/// refreshes its statistics.
pub(crate) async fn fill_jobs(pool: &sqlx::PgPool, rows: usize) -> Result<(), BoxError> {
    sqlx::query("INSERT INTO jobs (payload) SELECT jsonb_build_object('i', i) FROM generate_series(1, $1) AS i")
        .bind(rows as i64)
        .execute(pool)
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE jobs").execute(pool).await?;
    Ok(())
}
