//! An operator's actions on documents without holding their lease: play,
//! kill, reschedule and drop, one at a time or in bulk over a filter.
//!
//! An action on an active document takes it from its worker: the lease is
//! cleared, so the worker's own resolution later fails with
//! [`Error::LeaseLost`] and changes nothing (fencing). Counters stay exact.

use crate::Client;
use crate::browse::DocFilter;
use crate::doc::Schedule;
use crate::error::{Error, Result};

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

impl Client {
    /// Makes a document due now with its attempts reset, whatever its status.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], database errors.
    pub async fn play(&self, queue: &str, subject: &str) -> Result<()> {
        self.act(queue, subject, BulkAction::Play).await
    }

    /// Kills a document (dead, never re-admitted), whatever its status.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], database errors.
    pub async fn force_kill(&self, queue: &str, subject: &str) -> Result<()> {
        self.act(queue, subject, BulkAction::Kill).await
    }

    /// Plans a document at `when` with its attempts reset, whatever its status.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], database errors.
    pub async fn force_reschedule(&self, queue: &str, subject: &str, when: Schedule) -> Result<()> {
        self.act(queue, subject, BulkAction::Reschedule(when)).await
    }

    /// Deletes a document, whatever its status.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::QueueNotFound`], database errors.
    pub async fn force_drop(&self, queue: &str, subject: &str) -> Result<()> {
        self.act(queue, subject, BulkAction::Drop).await
    }

    /// Applies `action` to every document of `queue` matching `filter`, in
    /// short transactions of at most `batch` documents each (so a million
    /// documents neither lock the table nor hit a statement timeout); returns
    /// how many documents changed.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidArgument`], database errors
    /// (the batches committed before the error stay done).
    pub async fn bulk(
        &self,
        queue: &str,
        filter: &DocFilter,
        action: BulkAction,
        batch: i32,
    ) -> Result<u64> {
        let _ = (queue, filter, action, batch);
        Err(Error::InvalidArgument {
            message: "not implemented".into(),
        })
    }

    async fn act(&self, queue: &str, subject: &str, action: BulkAction) -> Result<()> {
        let _ = (queue, subject, action);
        Err(Error::InvalidArgument {
            message: "not implemented".into(),
        })
    }
}
