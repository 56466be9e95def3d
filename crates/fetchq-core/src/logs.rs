//! The per-queue error log and the cross-queue trace of a subject.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::error::Result;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// One step of [`Client::trace`].
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// for step in client.trace("ironman").await? {
///     println!("#{} {} {}: {}", step.step, step.queue, step.kind, step.info);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep {
    /// Position in time order, from 1.
    pub step: i64,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The queue.
    pub queue: String,
    /// `"document"` or `"error"`.
    pub kind: String,
    /// The document's status name, or the error message.
    pub info: String,
    /// The document row, or the error's details and ref_id.
    pub details: Value,
}

impl Client {
    /// Writes a row to a queue's error log.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound),
    /// [`Error::InvalidSubject`](crate::Error::InvalidSubject), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.log_error("avengers", "ironman", "rate limited", Some(&serde_json::json!({"retry_after": 60})), Some("worker-7")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn log_error(
        &self,
        queue: &str,
        subject: &str,
        message: &str,
        details: Option<&Value>,
        ref_id: Option<&str>,
    ) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(sql!("log_error"))
            .bind(queue)
            .bind(subject)
            .bind(message)
            .bind(details)
            .bind(ref_id)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Everything known about a subject in every queue: document rows and
    /// error log entries, oldest first.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// for step in client.trace("ironman").await? {
    ///     println!("{} {} {} {}", step.created_at, step.queue, step.kind, step.info);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn trace(&self, subject: &str) -> Result<Vec<TraceStep>> {
        let rows = sqlx::query(sql!("trace"))
            .bind(subject)
            .fetch_all(self.exec())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TraceStep {
                    step: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    queue: row.try_get(2)?,
                    kind: row.try_get(3)?,
                    info: row.try_get(4)?,
                    details: row.try_get(5)?,
                })
            })
            .collect()
    }
}
