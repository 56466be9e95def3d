//! Batched operations on leased documents of one queue: one round-trip for
//! many heartbeats, completions, reschedules or releases. Each returns the
//! subjects it acted on; a subject missing from the answer had lost its lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::doc::{Schedule, check_version};
use crate::error::Result;
use crate::per_queue::{per_queue, queue_error, statement};
use crate::pick::Lease;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

fn subjects_and_tokens<'a>(leases: impl Iterator<Item = &'a Lease>) -> (Vec<String>, Vec<Uuid>) {
    leases.map(|l| (l.subject.clone(), l.token)).unzip()
}

async fn subjects_of(
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    client: &Client,
) -> std::result::Result<Vec<String>, sqlx::Error> {
    let rows = query.fetch_all(client.exec()).await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

impl Client {
    /// The earliest planned time among the queue's planned documents, if any:
    /// how long an idle worker may sleep before something becomes due.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// if let Some(at) = client.queue_next_due("avengers").await? {
    ///     println!("next planned document at {at}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_next_due"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// How long until the queue's next planned document is due, measured on
    /// the database's clock (so a skewed local clock cannot make a worker spin).
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let idle = client.queue_next_due_in("avengers").await?.unwrap_or(std::time::Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub async fn queue_next_due_in(&self, queue: &str) -> Result<Option<Duration>> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_next_due_in"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        let secs: Option<f64> = row.try_get(0)?;
        Ok(due_in(secs))
    }

    /// How long an idle worker picking `version` of `queue` may sleep: until
    /// the earliest planned document of that version, measured on the
    /// database's clock. `None` when nothing of that version is planned or
    /// the queue is paused (a push or `queue_resume` sends a notification).
    /// Planned documents already due for more than 100 ms are not counted:
    /// a pick just before would have taken them unless another transaction
    /// holds their row, and waiting for that must not become a busy loop.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound),
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a negative
    /// version, database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let poll = std::time::Duration::from_secs(1);
    /// let sleep = client.queue_next_due_for("avengers", 0).await?.map_or(poll, |d| d.min(poll));
    /// # Ok(()) }
    /// ```
    pub async fn queue_next_due_for(&self, queue: &str, version: i32) -> Result<Option<Duration>> {
        validate_queue_name(queue)?;
        check_version(version)?;
        let row = sqlx::query(sql!("queue_next_due_for"))
            .bind(queue)
            .bind(version)
            .fetch_one(self.exec())
            .await?;
        let secs: Option<f64> = row.try_get(0)?;
        Ok(due_in(secs))
    }

    /// Heartbeat for many leases of `queue`: extends those still held to
    /// `duration` from now and returns their subjects.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, docs: Vec<fetchq_core::Document>) -> fetchq_core::Result<()> {
    /// let leases: Vec<_> = docs.iter().map(|d| d.lease.clone()).collect();
    /// let held = client.extend_leases("avengers", &leases, std::time::Duration::from_secs(60)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend_leases(
        &self,
        queue: &str,
        leases: &[Lease],
        duration: Duration,
    ) -> Result<Vec<String>> {
        validate_queue_name(queue)?;
        let (subjects, tokens) = subjects_and_tokens(leases.iter());
        let query = sqlx::query(sql!("doc_extend_lease_many"))
            .bind(queue)
            .bind(subjects)
            .bind(tokens)
            .bind(duration);
        Ok(subjects_of(query, self).await?)
    }

    /// Completes many leased documents of `queue` (each with an optional final
    /// payload) in one statement; returns the subjects completed.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, docs: Vec<fetchq_core::Document>) -> fetchq_core::Result<()> {
    /// let items: Vec<_> = docs.into_iter().map(|d| (d.lease, None)).collect();
    /// let done = client.complete_many("avengers", &items).await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete_many(
        &self,
        queue: &str,
        items: &[(Lease, Option<Value>)],
    ) -> Result<Vec<String>> {
        validate_queue_name(queue)?;
        let (subjects, tokens) = subjects_and_tokens(items.iter().map(|(l, _)| l));
        let payloads: Vec<Option<Value>> = items.iter().map(|(_, p)| p.clone()).collect();
        let statement = statement(per_queue!("complete_many"), queue);
        let query = sqlx::query(&statement)
            .bind(queue)
            .bind(subjects)
            .bind(tokens)
            .bind(payloads);
        subjects_of(query, self)
            .await
            .map_err(|e| queue_error(e, queue))
    }

    /// Reschedules many leased documents of `queue` in one statement; returns
    /// the subjects rescheduled.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge), database errors.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use fetchq_core::Schedule;
    /// # async fn run(client: fetchq_core::Client, docs: Vec<fetchq_core::Document>) -> fetchq_core::Result<()> {
    /// let next = Schedule::after(Duration::from_secs(2 * 86_400));
    /// let items: Vec<_> = docs.into_iter().map(|d| (d.lease, next, None)).collect();
    /// client.reschedule_many("avengers", &items).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reschedule_many(
        &self,
        queue: &str,
        items: &[(Lease, Schedule, Option<Value>)],
    ) -> Result<Vec<String>> {
        validate_queue_name(queue)?;
        let (subjects, tokens) = subjects_and_tokens(items.iter().map(|(l, _, _)| l));
        let (ats, delays): (Vec<_>, Vec<_>) = items.iter().map(|(_, s, _)| s.binds()).unzip();
        let payloads: Vec<Option<Value>> = items.iter().map(|(_, _, p)| p.clone()).collect();
        let statement = statement(per_queue!("reschedule_many"), queue);
        let query = sqlx::query(&statement)
            .bind(queue)
            .bind(subjects)
            .bind(tokens)
            .bind(ats)
            .bind(delays)
            .bind(payloads);
        subjects_of(query, self)
            .await
            .map_err(|e| queue_error(e, queue))
    }

    /// Gives leased documents back, untouched and pending at once, without
    /// counting the pick as an attempt (what a worker does when it shuts down
    /// with work it has not started or finished). Returns the subjects released.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, docs: Vec<fetchq_core::Document>) -> fetchq_core::Result<()> {
    /// let leases: Vec<_> = docs.into_iter().map(|d| d.lease).collect();
    /// client.release("avengers", &leases).await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(&self, queue: &str, leases: &[Lease]) -> Result<Vec<String>> {
        validate_queue_name(queue)?;
        let (subjects, tokens) = subjects_and_tokens(leases.iter());
        let query = sqlx::query(sql!("doc_release"))
            .bind(queue)
            .bind(subjects)
            .bind(tokens);
        Ok(subjects_of(query, self).await?)
    }
}

/// A wait the database measured in seconds on its own clock, as a
/// [`Duration`]: a document already due (negative seconds) waits zero.
pub(crate) fn due_in(secs: Option<f64>) -> Option<Duration> {
    secs.map(|s| Duration::try_from_secs_f64(s).unwrap_or_default())
}
