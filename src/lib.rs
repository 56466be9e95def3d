//! **fetchq**: a Postgres-backed, stateful job queue for millions of unique,
//! repetitive tasks (crawlers, syncs, mailers).
//!
//! A queue holds *documents* keyed by a unique subject. Workers pick due
//! documents under an exclusive lease, on as many machines as you like, and
//! finish each one by rescheduling (run again later), completing, rejecting
//! (retried with backoff, dead after `max_attempts`), killing or dropping it.
//! Every operation is a SQL function in PostgreSQL; this crate re-exports the
//! typed client ([`fetchq_core`]) and, as they land, the worker runtime and the
//! `#[fetchq::handler]` macro.
//!
//! ```no_run
//! use fetchq::{Client, NewDoc, PickOptions};
//!
//! # async fn run() -> fetchq::Result<()> {
//! let client = Client::connect("postgres://localhost/app").await?;
//! client.migrate().await?;
//! client.queue_create("avengers").await?;
//! client.push("avengers", &NewDoc::new("ironman")).await?;
//! for doc in client.pick("avengers", &PickOptions::new().limit(10)).await? {
//!     client.complete(&doc.lease, None).await?;
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub use fetchq_core::*;
