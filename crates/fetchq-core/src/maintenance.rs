//! Maintenance: orphan rescue, dead documents, promotions, retention, packing.

use std::time::Duration;

use sqlx::Row;

use crate::error::Result;
use crate::per_queue::is_missing_table;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// What one [`Client::mnt_run`] pass did.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let fetchq_core::MntRun { activated, rescheduled, killed } = client.mnt_run("avengers", 500).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MntRun {
    /// Planned documents made pending.
    pub activated: i32,
    /// Orphans (expired leases) made pending again.
    pub rescheduled: i32,
    /// Orphans out of attempts, now dead.
    pub killed: i32,
}

/// What [`Client::mnt_job_run`] did.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let run = client.mnt_job_run(std::time::Duration::from_secs(60), 10).await?;
/// if !run.success {
///     eprintln!("a maintenance job failed: see fetchq.jobs.last_error");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobRun {
    /// False when at least one job failed (its error is in `fetchq.jobs.last_error`).
    pub success: bool,
    /// Jobs run.
    pub processed: i32,
}

impl Client {
    /// One maintenance pass over a queue, handling up to `limit` documents of
    /// each kind. Safe to run from many processes at once.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let pass = client.mnt_run("avengers", 500).await?;
    /// println!("{} orphans retried, {} dead", pass.rescheduled, pass.killed);
    /// # Ok(()) }
    /// ```
    pub async fn mnt_run(&self, queue: &str, limit: i32) -> Result<MntRun> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("mnt_run"))
            .bind(queue)
            .bind(limit)
            .fetch_one(self.exec())
            .await?;
        Ok(MntRun {
            activated: row.try_get(0)?,
            rescheduled: row.try_get(1)?,
            killed: row.try_get(2)?,
        })
    }

    /// Runs up to `limit` due maintenance jobs (per-queue `mnt`, `sts`, `drp`
    /// and the global counter pack), each claimed for `lock`.
    ///
    /// # Errors
    ///
    /// Database errors (a failing job does not fail the call: see [`JobRun::success`]).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.mnt_job_run(std::time::Duration::from_secs(60), 10).await?;
    /// # Ok(()) }
    /// ```
    pub async fn mnt_job_run(&self, lock: Duration, limit: i32) -> Result<JobRun> {
        let row = sqlx::query(sql!("mnt_job_run"))
            .bind(lock)
            .bind(limit)
            .fetch_one(self.exec())
            .await?;
        Ok(JobRun {
            success: row.try_get(0)?,
            processed: row.try_get(1)?,
        })
    }

    /// Vacuums the fetchq tables that collected many dead rows (more than
    /// 1,000 and 10% of their live rows): queues under heavy churn, and the
    /// metric write-ahead log. Autovacuum visits a database at most once a
    /// minute by default; a queue rescheduling thousands of documents a second
    /// bloats in between. Tables locked by someone else are skipped. Returns
    /// the tables vacuumed. Run by the worker runtime's maintenance leader.
    ///
    /// # Errors
    ///
    /// Database errors, e.g. when the role does not own the tables.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// for table in client.vacuum_hot_tables().await? {
    ///     println!("vacuumed {table}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn vacuum_hot_tables(&self) -> Result<Vec<String>> {
        let tables: Vec<String> = sqlx::query_scalar(sql!("hot_tables"))
            .fetch_all(self.exec())
            .await?;
        let mut vacuumed = Vec::with_capacity(tables.len());
        for table in tables {
            // a catalog name quoted by format('%I.%I'); VACUUM cannot take a bind
            let done = sqlx::raw_sql(&format!("VACUUM (SKIP_LOCKED) {table}"))
                .execute(self.pool())
                .await;
            match done {
                Ok(_) => vacuumed.push(table),
                // the queue was dropped since the list was read: nothing to do
                Err(e) if is_missing_table(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(vacuumed)
    }

    /// Runs every queue's maintenance now, then packs the counters; returns
    /// (jobs processed, metric writes packed).
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let (jobs, packed) = client.mnt().await?;
    /// # Ok(()) }
    /// ```
    pub async fn mnt(&self) -> Result<(i32, i32)> {
        let row = sqlx::query(sql!("mnt"))
            .bind(Duration::from_secs(300))
            .fetch_one(self.exec())
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}
