//! `fetchq status`: every queue's counts by status, paused or not, current
//! version, lag, and throughput (documents processed per minute).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fetchq_core::Client;
use serde_json::json;

use crate::BoxError;
use crate::output::{print_json, table};

/// Snapshots older than this are not used for the throughput.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Snapshots younger than this are too close to now to measure a rate.
const SNAPSHOT_MIN_AGE: Duration = Duration::from_secs(30);

/// Documents processed per minute: from `before` (a count at `at`) to `now_count` now.
fn per_minute(before: i64, now_count: i64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| (now_count - before).max(0) as f64 * 60.0 / seconds)
}

/// The queue's `prc` snapshot to measure from: the latest one at least
/// SNAPSHOT_MIN_AGE old and at most SNAPSHOT_MAX_AGE old.
async fn snapshot(
    client: &Client,
    queue: &str,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, i64)> {
    let since = now - chrono::Duration::from_std(SNAPSHOT_MAX_AGE).ok()?;
    let newest = now - chrono::Duration::from_std(SNAPSHOT_MIN_AGE).ok()?;
    let points = client.metric_history(queue, since, 10_000).await.ok()?;
    points
        .into_iter()
        .filter(|p| p.metric == "prc" && p.created_at <= newest)
        .map(|p| (p.created_at, p.value))
        .next_back()
}

/// A lag as people read it: `0s`, `4.2s`, `3m07s`, `2h05m`.
fn human_lag(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s").replace(".0s", "s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// Prints every queue's counters (exact at read), lag and throughput. The
/// throughput is measured from the queue's last metric snapshot of the last
/// 15 minutes (maintenance takes one every 5 minutes), else over `sample`
/// seconds between two reads (none when `sample` is zero).
pub(crate) async fn run(client: &Client, as_json: bool, sample: Duration) -> Result<(), BoxError> {
    let mut rows = vec![
        [
            "QUEUE",
            "STATE",
            "VERSION",
            "TOTAL",
            "PENDING",
            "PLANNED",
            "ACTIVE",
            "COMPLETED",
            "DEAD",
            "LAG",
            "PROCESSED/MIN",
        ]
        .map(String::from)
        .to_vec(),
    ];
    client.metric_log_pack().await?;
    // unnamed and inside a transaction: works through a transaction pooler
    let mut tx = client.pool().begin().await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let started = Instant::now();
    let mut queues = Vec::new();
    for q in client.queue_list().await? {
        let read = async {
            let c = client.metric_get_common(&q.name).await?;
            let lag = client.queue_lag(&q.name).await?;
            Ok::<_, fetchq_core::Error>((c, lag))
        };
        let (c, lag) = match read.await {
            Ok(r) => r,
            // dropped between the list and now
            Err(fetchq_core::Error::QueueNotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let from_snapshot = snapshot(client, &q.name, now).await;
        queues.push((q, c, lag, from_snapshot));
    }
    // queues without a recent snapshot: a second read `sample` later
    let mut second: HashMap<String, i64> = HashMap::new();
    let mut sampled = 0.0;
    if !sample.is_zero() && queues.iter().any(|(_, _, _, s)| s.is_none()) {
        tokio::time::sleep(sample.saturating_sub(started.elapsed())).await;
        sampled = started.elapsed().as_secs_f64();
        for (q, _, _, s) in &queues {
            if s.is_none()
                && let Ok(c) = client.metric_get_common(&q.name).await
            {
                second.insert(q.name.clone(), c.processed);
            }
        }
    }
    let mut out = Vec::new();
    for (q, c, lag, snap) in &queues {
        let (throughput, window, source) = match snap {
            Some((at, value)) => {
                let secs = (now - *at).num_milliseconds() as f64 / 1000.0;
                (
                    per_minute(*value, c.processed, secs),
                    Some(secs),
                    Some("snapshot"),
                )
            }
            None => match second.get(&q.name) {
                Some(later) => (
                    per_minute(c.processed, *later, sampled),
                    Some(sampled),
                    Some("sample"),
                ),
                None => (None, None, None),
            },
        };
        let state = if q.is_active { "active" } else { "paused" };
        let lag = lag.as_secs_f64();
        out.push(json!({
            "name": q.name,
            "paused": !q.is_active,
            "current_version": q.current_version,
            "max_attempts": q.max_attempts,
            "total": c.total,
            "pending": c.pending,
            "planned": c.planned,
            "active": c.active,
            "completed": c.completed,
            "dead": c.dead,
            "processed": c.processed,
            "lag_seconds": lag,
            "processed_per_minute": throughput,
            "throughput_window_seconds": window,
            "throughput_from": source,
        }));
        rows.push(vec![
            q.name.clone(),
            state.to_owned(),
            q.current_version.to_string(),
            c.total.to_string(),
            c.pending.to_string(),
            c.planned.to_string(),
            c.active.to_string(),
            c.completed.to_string(),
            c.dead.to_string(),
            human_lag(lag),
            throughput.map_or_else(|| "-".to_owned(), |t| format!("{t:.1}")),
        ]);
    }
    if as_json {
        print_json(&json!({ "queues": out }));
    } else if out.is_empty() {
        println!("no queues (create one with: fetchq queue create NAME)");
    } else {
        table(&rows);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_and_rates_read_well() {
        assert_eq!(human_lag(0.0), "0s");
        assert_eq!(human_lag(4.25), "4.2s");
        assert_eq!(human_lag(187.0), "3m07s");
        assert_eq!(human_lag(7500.0), "2h05m");
        assert_eq!(per_minute(10, 70, 30.0), Some(120.0));
        assert_eq!(per_minute(10, 5, 30.0), Some(0.0)); // a reset counter
        assert_eq!(per_minute(10, 70, 0.0), None);
    }
}
