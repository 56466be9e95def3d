//! Counters: the standard per-queue metrics and user-defined ones.
//!
//! Operations append deltas to a write-ahead table; [`Client::metric_log_pack`]
//! (run by maintenance every second) folds them into one row per metric.
//! Reads never count documents, and are exact without a pack: they add the
//! deltas not packed yet to the packed value (schema 13).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::Result;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// The standard counters of a queue (`fetchq.metric_get_common`), exact at
/// read (the counter writes not packed yet are added).
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let c: fetchq_core::Counters = client.metric_get_common("avengers").await?;
/// println!("{} pending, {} dead", c.pending, c.dead);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// `cnt`: documents in the queue.
    pub total: i64,
    /// `pnd`: pending (due) documents.
    pub pending: i64,
    /// `pln`: planned documents.
    pub planned: i64,
    /// `act`: active (leased) documents.
    pub active: i64,
    /// `cpl`: completed documents.
    pub completed: i64,
    /// `kll`: dead documents.
    pub dead: i64,
    /// `ent`: documents ever added.
    pub entered: i64,
    /// `drp`: documents ever dropped.
    pub dropped: i64,
    /// `pkd`: picks.
    pub picked: i64,
    /// `prc`: resolutions (reschedule, reject, complete, kill, drop).
    pub processed: i64,
    /// `res`: reschedules.
    pub rescheduled: i64,
    /// `rej`: rejects.
    pub rejected: i64,
    /// `orp`: orphans (expired leases) handled by maintenance.
    pub orphans: i64,
    /// `err`: rejects plus orphans.
    pub errors: i64,
}

/// Per-status document counts from a real `COUNT` (`fetchq.metric_compute`).
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let truth: fetchq_core::StatusCounts = client.metric_compute("avengers").await?;
/// assert_eq!(client.metric_get_common("avengers").await?.status_counts(), truth);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusCounts {
    /// All documents.
    pub total: i64,
    /// Planned.
    pub planned: i64,
    /// Pending.
    pub pending: i64,
    /// Active.
    pub active: i64,
    /// Dead.
    pub dead: i64,
    /// Completed.
    pub completed: i64,
}

impl StatusCounts {
    fn from_row(row: &PgRow) -> Result<Self> {
        Ok(Self {
            total: row.try_get(0)?,
            planned: row.try_get(1)?,
            pending: row.try_get(2)?,
            active: row.try_get(3)?,
            dead: row.try_get(4)?,
            completed: row.try_get(5)?,
        })
    }
}

impl Counters {
    /// The status part, to compare with [`Client::metric_compute`].
    ///
    /// ```
    /// let c = fetchq_core::Counters { total: 3, pending: 3, ..Default::default() };
    /// assert_eq!(c.status_counts().pending, 3);
    /// ```
    pub fn status_counts(&self) -> StatusCounts {
        StatusCounts {
            total: self.total,
            planned: self.planned,
            pending: self.pending,
            active: self.active,
            dead: self.dead,
            completed: self.completed,
        }
    }
}

/// One metric value (exact: packed value plus the writes not packed yet).
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// for m in client.metric_list("avengers").await? {
///     println!("{} = {}", m.metric, m.value);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricValue {
    /// Metric name.
    pub metric: String,
    /// Current value.
    pub value: i64,
    /// Last time it changed.
    pub updated_at: Option<DateTime<Utc>>,
}

impl Client {
    /// Adds `increment` (negative to decrement) to a user metric of `queue`
    /// (any valid queue name, existing or not, and any metric name).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`](crate::Error::InvalidQueueName),
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty or long metric name.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.metric_log_increment("avengers", "scrape_ms", 420).await?;
    /// client.metric_log_pack().await?;
    /// assert_eq!(client.metric_get("avengers", "scrape_ms").await?.map(|m| m.value), Some(420));
    /// # Ok(()) }
    /// ```
    pub async fn metric_log_increment(
        &self,
        queue: &str,
        metric: &str,
        increment: i64,
    ) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(sql!("metric_log_increment"))
            .bind(queue)
            .bind(metric)
            .bind(increment)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Sets a user metric to `value` (applied at the next pack).
    ///
    /// # Errors
    ///
    /// As [`metric_log_increment`](Self::metric_log_increment).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.metric_log_set("crawler", "queue_lag_s", 12).await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_log_set(&self, queue: &str, metric: &str, value: i64) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(sql!("metric_log_set"))
            .bind(queue)
            .bind(metric)
            .bind(value)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Folds pending metric writes into the counters; returns how many writes
    /// were folded (0 when another process is packing right now).
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let folded = client.metric_log_pack().await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_log_pack(&self) -> Result<i32> {
        let row = sqlx::query(sql!("metric_log_pack"))
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// One metric, or `None` when it was never written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`](crate::Error::InvalidQueueName), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// if let Some(m) = client.metric_get("avengers", "cnt").await? {
    ///     println!("{} documents", m.value);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn metric_get(&self, queue: &str, metric: &str) -> Result<Option<MetricValue>> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("metric_get"))
            .bind(queue)
            .bind(metric)
            .fetch_one(self.exec())
            .await?;
        let exists: bool = row.try_get(2)?;
        Ok(exists.then(|| MetricValue {
            metric: metric.to_owned(),
            value: row.try_get(0).unwrap_or_default(),
            updated_at: row.try_get(1).ok(),
        }))
    }

    /// Every metric of a queue, by name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`](crate::Error::InvalidQueueName), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let all = client.metric_list("avengers").await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_list(&self, queue: &str) -> Result<Vec<MetricValue>> {
        validate_queue_name(queue)?;
        let rows = sqlx::query(sql!("metric_get_queue"))
            .bind(queue)
            .fetch_all(self.exec())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(MetricValue {
                    metric: row.try_get(0)?,
                    value: row.try_get(1)?,
                    updated_at: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// The standard counters of a queue, exact at read without counting
    /// documents (O(1) plus the queue's counter writes not packed yet).
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let c = client.metric_get_common("avengers").await?;
    /// println!("{} of {} done", c.completed, c.total);
    /// # Ok(()) }
    /// ```
    pub async fn metric_get_common(&self, queue: &str) -> Result<Counters> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("metric_get_common"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        let v = |i: usize| row.try_get::<i64, _>(i);
        Ok(Counters {
            total: v(0)?,
            pending: v(1)?,
            planned: v(2)?,
            active: v(3)?,
            completed: v(4)?,
            dead: v(5)?,
            entered: v(6)?,
            dropped: v(7)?,
            picked: v(8)?,
            processed: v(9)?,
            rescheduled: v(10)?,
            rejected: v(11)?,
            orphans: v(12)?,
            errors: v(13)?,
        })
    }

    /// Counts documents per status for real (slow on big queues: for checks and repair).
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let counts = client.metric_compute("avengers").await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_compute(&self, queue: &str) -> Result<StatusCounts> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("metric_compute"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        StatusCounts::from_row(&row)
    }

    /// Repairs the status counters from a real count; returns it.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let repaired = client.metric_reset("avengers").await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_reset(&self, queue: &str) -> Result<StatusCounts> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("metric_reset"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        StatusCounts::from_row(&row)
    }

    /// Copies the queue's counters into its time series; returns rows written.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let rows = client.metric_snap("avengers").await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_snap(&self, queue: &str) -> Result<i32> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("metric_snap"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get(0)?)
    }
}
