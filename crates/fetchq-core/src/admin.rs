//! An operator's actions on documents without holding their lease: play,
//! kill, reschedule and drop, one at a time or in bulk over a filter.
//!
//! An action on an active document takes it from its worker: the lease is
//! cleared, so the worker's own resolution later fails with
//! [`Error::LeaseLost`] and changes nothing (fencing). Counters stay exact.
//! These are not resolutions: the status counters move, `prc`, `res` and
//! `err` do not (a drop counts in `drp`, as every drop does). A document made
//! pending or planned wakes idle workers, as a push does.

use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::browse::DocFilter;
use crate::doc::{Schedule, Status, check_subject};
use crate::error::{Error, Result};
use crate::per_queue::queue_error;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// Largest batch of [`Client::bulk`] (and of `fetchq.doc_bulk`).
const MAX_BATCH: i32 = 10_000;

impl BulkAction {
    /// The action's name in `fetchq.doc_bulk`.
    fn sql_name(self) -> &'static str {
        match self {
            BulkAction::Play => "play",
            BulkAction::Kill => "kill",
            BulkAction::Reschedule(_) => "reschedule",
            BulkAction::Drop => "drop",
        }
    }
}

/// What [`Client::bulk`] does to every matching document.
///
/// ```
/// use fetchq_core::{BulkAction, Schedule};
/// let later = BulkAction::Reschedule(Schedule::after(std::time::Duration::from_secs(3600)));
/// # let _ = later;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// Due now, attempts reset (the original console's "play").
    Play,
    /// Dead (status -1), kept so its subject is never re-admitted.
    Kill,
    /// Planned (or pending if already due) at this time, attempts reset.
    Reschedule(Schedule),
    /// Deleted.
    Drop,
}

/// How far a [`Client::bulk_from`] call went.
///
/// ```
/// let done = fetchq_core::BulkProgress { changed: 12, next_after: None };
/// assert!(done.is_done());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkProgress {
    /// Documents changed by this call.
    pub changed: u64,
    /// `None` when every matching document was visited; otherwise the subject
    /// to pass as `after` to go on.
    pub next_after: Option<String>,
}

impl BulkProgress {
    /// Whether every matching document was visited.
    ///
    /// ```
    /// let more = fetchq_core::BulkProgress { changed: 1000, next_after: Some("user/0999".into()) };
    /// assert!(!more.is_done());
    /// ```
    pub fn is_done(&self) -> bool {
        self.next_after.is_none()
    }
}

impl Client {
    /// Makes a document due now with its attempts reset, whatever its status
    /// (pending, planned time now). Waits for a transaction holding the
    /// document's row. As `fetchq.doc_play`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], [`Error::InvalidSubject`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.play("avengers", "ironman").await?;
    /// # Ok(()) }
    /// ```
    pub async fn play(&self, queue: &str, subject: &str) -> Result<()> {
        self.act(queue, subject, BulkAction::Play).await
    }

    /// Kills a document (dead, never re-admitted), whatever its status; its
    /// attempts and planned time are kept. As `fetchq.doc_force_kill`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], [`Error::InvalidSubject`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.force_kill("avengers", "loki").await?;
    /// # Ok(()) }
    /// ```
    pub async fn force_kill(&self, queue: &str, subject: &str) -> Result<()> {
        self.act(queue, subject, BulkAction::Kill).await
    }

    /// Plans a document at `when` with its attempts reset, whatever its status
    /// (pending when `when` is not in the future). As `fetchq.doc_force_reschedule`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], [`Error::InvalidSubject`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// use std::time::Duration;
    /// client.force_reschedule("avengers", "hulk", fetchq_core::Schedule::after(Duration::from_secs(600))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn force_reschedule(&self, queue: &str, subject: &str, when: Schedule) -> Result<()> {
        self.act(queue, subject, BulkAction::Reschedule(when)).await
    }

    /// Deletes a document, whatever its status; its subject can be pushed
    /// again. As `fetchq.doc_force_drop`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], [`Error::InvalidSubject`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.force_drop("avengers", "thanos").await?;
    /// # Ok(()) }
    /// ```
    pub async fn force_drop(&self, queue: &str, subject: &str) -> Result<()> {
        self.act(queue, subject, BulkAction::Drop).await
    }

    /// Applies `action` to every document of `queue` matching `filter`, in
    /// short transactions of at most `batch` documents each (so a million
    /// documents neither lock the table nor hit a statement timeout); returns
    /// how many documents changed. Batches follow the subject order (each
    /// starts after the last subject of the one before), so documents that
    /// still match after the action are not met twice and the loop ends.
    /// A document whose row another transaction holds at that moment is
    /// skipped, not waited for, and not counted: run it again to catch it.
    /// A [`BulkAction::Reschedule`] time is taken once, on the database clock,
    /// for every batch. Each batch is one call of `fetchq.doc_bulk`.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`] (also when the queue is dropped between
    /// batches), [`Error::InvalidArgument`] (batch outside 1 to 10000, a NUL
    /// byte in the prefix), database errors (the batches committed before the
    /// error stay done).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// use fetchq_core::{BulkAction, DocFilter, Status};
    /// let retried = client
    ///     .bulk("avengers", &DocFilter::new().status(Status::Dead).version(1), BulkAction::Play, 1000)
    ///     .await?;
    /// println!("{retried} dead documents are due again");
    /// # Ok(()) }
    /// ```
    pub async fn bulk(
        &self,
        queue: &str,
        filter: &DocFilter,
        action: BulkAction,
        batch: i32,
    ) -> Result<u64> {
        let progress = self
            .bulk_from(queue, filter, action, batch, None, None)
            .await?;
        Ok(progress.changed)
    }

    /// [`bulk`](Self::bulk) in steps: starts after the subject `after` (None:
    /// from the first document) and stops at the end of the first batch that
    /// finishes after `deadline` (None: runs to the end). The answer says how
    /// many documents changed and, when it stopped early, where to go on
    /// from: pass [`BulkProgress::next_after`] as `after` to the next call.
    /// What the REST API's `docs:bulk` does to stay within its request
    /// timeout. A [`BulkAction::Reschedule`] time is taken once per call.
    ///
    /// # Errors
    ///
    /// As [`bulk`](Self::bulk); a NUL byte in `after` is
    /// [`Error::InvalidArgument`].
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// use std::time::{Duration, Instant};
    /// use fetchq_core::{BulkAction, DocFilter, Status};
    /// let filter = DocFilter::new().status(Status::Dead);
    /// let mut after: Option<String> = None;
    /// loop {
    ///     let deadline = Instant::now() + Duration::from_secs(5);
    ///     let step = client
    ///         .bulk_from("avengers", &filter, BulkAction::Play, 1000, after.as_deref(), Some(deadline))
    ///         .await?;
    ///     println!("{} more played", step.changed);
    ///     match step.next_after {
    ///         Some(next) => after = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn bulk_from(
        &self,
        queue: &str,
        filter: &DocFilter,
        action: BulkAction,
        batch: i32,
        after: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<BulkProgress> {
        validate_queue_name(queue)?;
        filter.check()?;
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(Error::InvalidArgument {
                message: format!("batch must be 1 to {MAX_BATCH}, got {batch}"),
            });
        }
        if after.is_some_and(|a| a.contains('\0')) {
            return Err(Error::InvalidArgument {
                message: "after must not contain a NUL byte".into(),
            });
        }
        // one time for every batch, on the database clock
        let at: Option<DateTime<Utc>> = match action {
            BulkAction::Reschedule(when) => {
                let (at, delay) = when.binds();
                let row = sqlx::query(sql!("db_time"))
                    .bind(at)
                    .bind(delay)
                    .fetch_one(self.exec())
                    .await?;
                Some(row.try_get(0)?)
            }
            _ => None,
        };
        let mut after: Option<String> = after.map(str::to_owned);
        let mut total: u64 = 0;
        loop {
            // one short transaction per batch (autocommit)
            let row = sqlx::query(sql!("doc_bulk"))
                .bind(queue)
                .bind(filter.status.map(Status::code))
                .bind(filter.version)
                .bind(filter.subject_prefix.as_deref())
                .bind(action.sql_name())
                .bind(at)
                .bind(after.as_deref())
                .bind(batch)
                .fetch_one(self.exec())
                .await
                .map_err(|e| queue_error(e, queue))?;
            let changed: i32 = row.try_get(0)?;
            let last: Option<String> = row.try_get(1)?;
            total += u64::try_from(changed).unwrap_or(0);
            // keyset on the subject: every batch starts after the last one, so
            // documents that still match after the action are not met again
            match last {
                Some(last) if changed >= batch => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(BulkProgress {
                            changed: total,
                            next_after: Some(last),
                        });
                    }
                    after = Some(last);
                }
                _ => {
                    return Ok(BulkProgress {
                        changed: total,
                        next_after: None,
                    });
                }
            }
        }
    }

    async fn act(&self, queue: &str, subject: &str, action: BulkAction) -> Result<()> {
        validate_queue_name(queue)?;
        check_subject(subject)?;
        let query = match action {
            BulkAction::Play => sqlx::query(sql!("doc_play")),
            BulkAction::Kill => sqlx::query(sql!("doc_force_kill")),
            BulkAction::Drop => sqlx::query(sql!("doc_force_drop")),
            BulkAction::Reschedule(when) => {
                let (at, delay) = when.binds();
                sqlx::query(sql!("doc_force_reschedule"))
                    .bind(queue)
                    .bind(subject)
                    .bind(at)
                    .bind(delay)
            }
        };
        let query = match action {
            BulkAction::Reschedule(_) => query,
            _ => query.bind(queue).bind(subject),
        };
        let row = query
            .fetch_one(self.exec())
            .await
            .map_err(|e| queue_error(e, queue))?;
        if row.try_get::<i32, _>(0)? > 0 {
            Ok(())
        } else {
            Err(Error::NotFound {
                queue: queue.to_owned(),
                subject: subject.to_owned(),
            })
        }
    }
}
