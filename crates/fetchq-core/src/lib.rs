//! The fetchq SQL engine and its typed async client.
//!
//! fetchq is a queue of *documents*, not messages: each queue holds documents
//! keyed by a unique **subject**, with a version, a priority, a planned time
//! (`next_iteration`) and a JSON payload. Workers [`pick`](Client::pick) due
//! documents under an exclusive lease and finish each one by rescheduling it
//! (repetitive tasks), completing, rejecting (retried with backoff until
//! `max_attempts`), killing or dropping it.
//!
//! The engine is plain SQL and PL/pgSQL installed in schema `fetchq` (functions,
//! system tables) and `fetchq_data` (one set of tables per queue); every
//! operation is a SQL function callable from `psql` or any language. This crate
//! embeds it ([`migrate`]), packages it as a PostgreSQL extension
//! ([`extension`]) and wraps it with types ([`Client`]).
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use fetchq_core::{Client, NewDoc, PickOptions, Schedule};
//!
//! # async fn run() -> fetchq_core::Result<()> {
//! let client = Client::connect("postgres://localhost/app").await?;
//! client.migrate().await?;
//! client.queue_create("avengers").await?;
//!
//! // unique subjects: pushing "ironman" twice queues it once
//! client.push("avengers", &NewDoc::new("ironman").payload(serde_json::json!({"score": 20}))).await?;
//! assert!(!client.push("avengers", &NewDoc::new("ironman")).await?);
//!
//! for doc in client.pick("avengers", &PickOptions::new().limit(10)).await? {
//!     // ... scrape the profile, then do it again every second day
//!     client.reschedule(&doc.lease, Schedule::after(Duration::from_secs(2 * 86_400)), None).await?;
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod admin;
mod batch;
mod browse;
mod client;
mod cron;
mod doc;
#[cfg(feature = "embedded")]
pub mod embedded;
mod error;
mod exec;
pub mod extension;
mod lag;
mod logs;
mod maintenance;
mod metrics;
mod migrate;
mod per_queue;
mod pick;
mod queue;
mod rate;
mod reindex;
mod retention;
mod timers;
mod workers;

/// The `chrono` this crate uses (planned times are `DateTime<Utc>`), so
/// callers need no second copy of the same version.
pub use chrono;
/// The `sqlx` this crate uses: build a pool of your own size with
/// `fetchq_core::sqlx::postgres::PgPoolOptions` and hand it to [`Client::new`].
pub use sqlx;

pub use admin::{BulkAction, BulkProgress};
pub use browse::{DocCount, DocFilter, LogEntry, MetricPoint};
pub use client::{CONNECT_ACQUIRE_TIMEOUT, Client, ClientOptions, Info};
pub use cron::{
    CronSchedule, CronSpec, MAX_COUNTED_TICKS, MAX_CRON_CHARS, ScheduleInfo, ScheduleRound,
    ScheduleSet, validate_schedule_name,
};
pub use doc::{DocState, NewDoc, Schedule, Status, Upserted};
pub use error::{Error, Result, codes};
pub use lag::ExportedValue;
pub use logs::TraceStep;
pub use maintenance::{JobRun, MntRun};
pub use metrics::{Counters, MetricValue, StatusCounts};
pub use migrate::{MIGRATIONS, Migration, MigrationReport, latest_schema_version, migrate};
pub use pick::{Document, Lease, PickAnswer, PickOptions};
pub use queue::{QueueInfo, validate_queue_name};
pub use rate::{MAX_RATE_LIMIT, MAX_RATE_WINDOW, RateLimit};
pub use reindex::{REINDEX_RATIO, RebuiltIndex, Reindexed, Skip, SkippedIndex};
pub use retention::Retention;
pub use timers::{
    MetricBatch, TIMER_BUCKETS_MS, Timer, timers_from_export, validate_metric_name,
    validate_timer_name,
};
pub use workers::{MAX_RESCUE_AFTER, WorkerInfo, WorkerRescue, lease_owner};

/// Embeds `sql/queries/<name>.sql`: every statement the client sends lives in a file.
macro_rules! sql {
    ($name:literal) => {
        include_str!(concat!("../sql/queries/", $name, ".sql"))
    };
}
pub(crate) use sql;
