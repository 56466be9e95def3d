//! The fetchq worker runtime: registered handlers become supervised pools that
//! chew through queues, on as many processes and machines as you start.
//!
//! - **Pools**: each handler gets its own concurrency limit; picks are batched
//!   and never ask for more documents than there are free slots.
//! - **Wake-ups**: LISTEN/NOTIFY starts a newly pushed document within
//!   milliseconds; polling stays the fallback, and planned documents start at
//!   their time without maintenance.
//! - **Leases**: heartbeats extend them (batched per process) with the fencing
//!   token; a lost lease cancels the handler and discards its result.
//! - **Outcomes** are written in batches, with no added delay when idle.
//! - **Maintenance** runs in exactly one process at a time (advisory lock),
//!   and fires the cron schedules ([`Runtime::schedule`], [`HandlerOptions::cron`]).
//! - **Graceful shutdown** on SIGINT/SIGTERM: stop picking, finish in-flight work
//!   within a deadline, give back the rest. A second signal stops at once.
//! - **Database trouble** is retried with backoff and logged once.
//!
//! ```no_run
//! use std::time::Duration;
//! use async_trait::async_trait;
//! use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
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
//! # async fn run() -> Result<(), fetchq_worker::WorkerError> {
//! Runtime::new("postgres://localhost/app").register(Scrape).run().await
//! # }
//! ```
#![warn(missing_docs, missing_debug_implementations)]

mod completer;
mod erased;
mod handler;
mod heartbeat;
mod leader;
mod notifier;
mod pool;
mod registration;
mod registry;
mod runtime;
mod stats;
mod telemetry;
pub mod testing;
mod trouble;
mod vacuum;

pub use async_trait::async_trait;
pub use fetchq_core;
pub use fetchq_core::CronSchedule;
pub use handler::{
    Context, Doc, Handler, HandlerError, HandlerOptions, IntoHandlerResult, MAX_BATCH,
    MAX_METRICS_PER_DOC, Outcome,
};
pub use runtime::{Runtime, Source, WorkerError};
pub use stats::{HandlerStats, Stats};
#[cfg(feature = "otlp")]
pub use telemetry::otlp::OtlpOptions;
