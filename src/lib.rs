//! **fetchq**: a Postgres-backed, stateful job queue for millions of unique,
//! repetitive tasks (crawlers, syncs, mailers).
//!
//! A queue holds *documents* keyed by a unique subject. Workers pick due
//! documents under an exclusive lease, on as many machines as you like, and
//! finish each one by rescheduling (run again later), completing, rejecting
//! (retried with backoff, dead after `max_attempts`), killing or dropping it.
//! Every operation is a SQL function in PostgreSQL; this crate re-exports the
//! typed client ([`fetchq_core`]) and the worker runtime ([`fetchq_worker`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use fetchq::{async_trait, Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
//!
//! struct Scrape;
//!
//! #[async_trait]
//! impl Handler for Scrape {
//!     type Payload = serde_json::Value;
//!     fn options(&self) -> HandlerOptions {
//!         HandlerOptions::new("avengers").concurrency(8)
//!     }
//!     async fn handle(&self, doc: Doc<serde_json::Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
//!         println!("scraping {}", doc.subject);
//!         Ok(Outcome::reschedule_in(Duration::from_secs(2 * 86_400)))
//!     }
//! }
//!
//! # async fn run() -> Result<(), fetchq::WorkerError> {
//! Runtime::new("postgres://localhost/app").register(Scrape).run().await
//! # }
//! ```
#![warn(missing_docs)]

pub use fetchq_core::*;
#[cfg(feature = "macros")]
pub use fetchq_macros::handler;
#[cfg(feature = "otlp")]
pub use fetchq_worker::OtlpOptions;
pub use fetchq_worker::testing;
pub use fetchq_worker::{
    Context, Doc, Handler, HandlerError, HandlerOptions, HandlerStats, IntoHandlerResult,
    MAX_METRICS_PER_DOC, Outcome, Runtime, Source, Stats, WorkerError, async_trait,
};

/// The result of a handler (and a convenient one for code around it): its
/// error is a [`HandlerError`], which any error converts into with `?`, so a
/// handler's failure rejects the document with the error's message. The
/// client's own result type is [`fetchq_core::Result`].
///
/// ```
/// fn parse(raw: &str) -> fetchq::Result<u32> {
///     Ok(raw.parse::<u32>()?)
/// }
/// assert!(parse("x").is_err());
/// ```
pub type Result<T, E = HandlerError> = std::result::Result<T, E>;
