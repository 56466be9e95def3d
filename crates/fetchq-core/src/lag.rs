//! How late a queue is: the age of its oldest due document
//! (`fetchq.queue_lag`), and the one read a metrics exporter needs
//! (`fetchq.metric_export`).

use std::time::Duration;

use sqlx::Row;

use crate::error::Result;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// One value of [`Client::metric_export`]: a queue, a metric name and its value.
///
/// Counters (`counter` true) are the engine's (`cnt`, `pnd`, `pln`, `act`,
/// `cpl`, `kll`, `ent`, `drp`, `pkd`, `prc`, `res`, `rej`, `orp`, `err`, `kld`,
/// `v<N>`) and the user's own; the queue's state (`counter` false) is
/// `paused` (1 or 0), `current_version`, `error_log_rows` and `lag_seconds`.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// for v in client.metric_export().await? {
///     println!("{} {} {}", v.queue, v.metric, v.value);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedValue {
    /// The queue.
    pub queue: String,
    /// The metric.
    pub metric: String,
    /// Its value now (counters are exact: writes not packed yet are added).
    pub value: f64,
    /// A counter (true) or the queue's state (false).
    pub counter: bool,
}

impl Client {
    /// How late the oldest due document of the queue is (zero when none is
    /// due): now minus the earliest due time among pending documents and
    /// planned ones whose time has come. Index probes only, never a count.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`](crate::Error::InvalidQueueName),
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let lag = client.queue_lag("avengers").await?;
    /// if lag.as_secs() > 60 {
    ///     println!("avengers is {lag:?} behind");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_lag(&self, queue: &str) -> Result<Duration> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_lag"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        let secs: f64 = row.try_get(0)?;
        Ok(Duration::try_from_secs_f64(secs).unwrap_or_default())
    }

    /// Every queue's counters (exact), paused flag, current version,
    /// error-log rows and lag, in one call costing O(queues), never
    /// O(documents): what `GET /metrics` of `fetchq serve` exposes.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let values = client.metric_export().await?;
    /// let pending: f64 = values.iter().filter(|v| v.metric == "pnd").map(|v| v.value).sum();
    /// # Ok(()) }
    /// ```
    pub async fn metric_export(&self) -> Result<Vec<ExportedValue>> {
        let rows = sqlx::query(sql!("metric_export"))
            .fetch_all(self.exec())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ExportedValue {
                    queue: row.try_get(0)?,
                    metric: row.try_get(1)?,
                    value: row.try_get(2)?,
                    counter: row.try_get(3)?,
                })
            })
            .collect()
    }
}
