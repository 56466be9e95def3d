//! Helpers for testing handlers and workers against a real database, in the
//! spirit of River's `rivertest`: run a handler once on a stored document,
//! wait until a queue has nothing left to do, and require that a document
//! was (or was not) pushed.
//!
//! ```no_run
//! use std::time::Duration;
//! use fetchq_worker::{testing, Outcome};
//! # use fetchq_worker::{async_trait, Context, Doc, Handler, HandlerError, HandlerOptions};
//! # struct Scrape;
//! # #[async_trait]
//! # impl Handler for Scrape {
//! #     type Payload = serde_json::Value;
//! #     fn options(&self) -> HandlerOptions { HandlerOptions::new("avengers") }
//! #     async fn handle(&self, _: Doc<serde_json::Value>, _: Context) -> Result<Outcome, HandlerError> { Ok(Outcome::complete()) }
//! # }
//!
//! # async fn run(client: fetchq_core::Client) -> Result<(), Box<dyn std::error::Error>> {
//! client.push("avengers", &fetchq_core::NewDoc::new("ironman")).await?;
//! // the handler's verdict on that document, nothing written
//! let outcome = testing::run_once(&Scrape, &client, "avengers", "ironman")
//!     .await
//!     .map_err(|e| e.to_string())?;
//! assert_eq!(outcome.kind(), "complete");
//! // ... or run a real worker, then:
//! testing::wait_idle(&client, "avengers", Duration::from_secs(10)).await?;
//! let doc = testing::require_pushed(&client, "avengers", "ironman").await;
//! testing::require_not_pushed(&client, "avengers", "thanos").await;
//! # let _ = doc;
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use fetchq_core::{Client, DocState, Document, Lease};

use crate::erased::decode;
use crate::handler::{Context, Handler, HandlerError, Outcome};

/// What [`wait_idle`] found when it gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The queue still had work when the time ran out.
    #[error(
        "queue {queue:?} still busy after {waited:?}: {pending} pending, {active} active, a planned document due: {due}"
    )]
    Busy {
        /// The queue.
        queue: String,
        /// How long it waited.
        waited: Duration,
        /// Pending documents at the last look.
        pending: i64,
        /// Active (leased) documents at the last look.
        active: i64,
        /// Whether a planned document was due at the last look.
        due: bool,
    },
    /// The database refused or failed (a missing queue, say).
    #[error(transparent)]
    Database(#[from] fetchq_core::Error),
}

/// Runs `handler` once on the stored document `subject` of `queue`, as the
/// runtime would (the payload decoded into the handler's type, a bad payload
/// being the same [`HandlerError`]), and returns its outcome without writing
/// it or taking a lease: the document is left as it is. The context's lease
/// has a nil token, so a handler that extends its lease is told it was lost.
///
/// # Errors
///
/// The handler's error, a payload that does not fit, or a document or queue
/// that does not exist (as a [`HandlerError`] saying so).
pub async fn run_once<H: Handler>(
    handler: &H,
    client: &Client,
    queue: &str,
    subject: &str,
) -> Result<Outcome, HandlerError> {
    let state = client
        .get(queue, subject)
        .await
        .map_err(|e| HandlerError::new(format!("run_once: {e}")))?;
    let lease = Lease {
        queue: queue.to_owned(),
        subject: subject.to_owned(),
        token: sqlx::types::Uuid::nil(),
        expires_at: state.next_iteration,
    };
    let doc = Document {
        subject: state.subject,
        payload: state.payload,
        version: state.version,
        priority: state.priority,
        attempts: state.attempts + 1,
        iterations: state.iterations,
        created_at: state.created_at,
        last_iteration: state.last_iteration,
        lease: lease.clone(),
    };
    let ctx = Context::new(client.clone(), lease);
    let doc = decode::<H::Payload>(doc, queue)?;
    handler.handle(doc, ctx).await
}

/// Waits until `queue` has nothing to do now: no pending and no active
/// document, and no planned document due (documents planned for later do
/// not count). Reads the exact counters, never a `COUNT(*)`.
///
/// # Errors
///
/// [`WaitError::Busy`] after `within`, with what was left;
/// [`WaitError::Database`] for a missing queue or a database error.
pub async fn wait_idle(client: &Client, queue: &str, within: Duration) -> Result<(), WaitError> {
    let start = Instant::now();
    loop {
        let c = client.metric_get_common(queue).await?;
        let due = client
            .queue_next_due(queue)
            .await?
            .is_some_and(|at| at <= chrono::Utc::now());
        if c.pending == 0 && c.active == 0 && !due {
            return Ok(());
        }
        if start.elapsed() >= within {
            return Err(WaitError::Busy {
                queue: queue.to_owned(),
                waited: start.elapsed(),
                pending: c.pending,
                active: c.active,
                due,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The document `subject` of `queue`, which must exist.
///
/// # Panics
///
/// When it does not exist, or the database fails: this is a test assertion.
pub async fn require_pushed(client: &Client, queue: &str, subject: &str) -> DocState {
    match client.get(queue, subject).await {
        Ok(doc) => doc,
        Err(e) => panic!("expected document {subject:?} in queue {queue:?}: {e}"),
    }
}

/// Requires that `queue` has no document `subject`.
///
/// # Panics
///
/// When it exists (with its state in the message), or the database fails
/// otherwise than by not finding it: this is a test assertion.
pub async fn require_not_pushed(client: &Client, queue: &str, subject: &str) {
    match client.get(queue, subject).await {
        Err(fetchq_core::Error::NotFound { .. }) => {}
        Ok(doc) => panic!("expected no document {subject:?} in queue {queue:?}, found {doc:?}"),
        Err(e) => panic!("looking for document {subject:?} in queue {queue:?}: {e}"),
    }
}
