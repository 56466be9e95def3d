//! Dump fetchq queues to one self-describing, checksummed, compressed file and
//! restore them, all or nothing.
//!
//! A dump reads one consistent snapshot of every queue it holds (a
//! `REPEATABLE READ READ ONLY` transaction, so workers keep running) and
//! streams it through `COPY`: memory stays flat whatever the queue's size. The
//! file (see [`format`]) is JSON lines: a [`Header`] with the engine and schema
//! versions and each queue's settings, counts and cron schedules, the
//! documents (with their keys), optionally the error logs and metric
//! snapshots, and a trailer with the SHA-256 of everything before it;
//! compressed with zstd (default), gzip or nothing.
//!
//! A restore recreates the queues with their settings and documents in one
//! transaction that commits only once the whole file was read and its checksum
//! matched: a truncated, corrupted or altered file, a wrong format version or a
//! conflict under [`OnConflict::Fail`] leaves the database as it was. Active
//! (leased) documents come back pending and due at once: their lease belonged
//! to a worker of the old database. Status counters are recomputed from the
//! restored documents. Schedules are recreated through `fetchq.schedule_set`
//! and fire from their next tick after the restore.
//!
//! ```no_run
//! # async fn run(pool: sqlx::PgPool) -> fetchq_backup::Result<()> {
//! use fetchq_backup::{DumpOptions, RestoreOptions};
//! let file = std::fs::File::create("mails.fqdump")?;
//! let summary = fetchq_backup::dump(&pool, &DumpOptions::queues(["mails"]), file).await?;
//! println!("{} documents", summary.header.queues[0].counts.cnt);
//!
//! let file = std::fs::File::open("mails.fqdump")?;
//! let restored = fetchq_backup::restore(&pool, &RestoreOptions::default().rename("mails_copy"), file).await?;
//! println!("{} documents restored", restored.queues[0].docs_written);
//! # Ok(()) }
//! ```

mod binary;
mod binary_out;
mod dump;
mod error;
pub mod format;
mod restore;

use std::io::{Read, Write};

use sqlx::PgPool;

pub use error::{Error, Result};
pub use format::{Counts, Header, QueueHeader, ScheduleEntry, Section, SectionKind, Trailer};

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Write(e)
    }
}

/// How a dump is compressed. A restore detects it by itself.
///
/// ```
/// use std::str::FromStr;
/// assert_eq!(fetchq_backup::Compression::from_str("gzip"), Ok(fetchq_backup::Compression::Gzip));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// zstd level 3 (default): fast and small.
    #[default]
    Zstd,
    /// gzip (fast level), for tools that only know gzip.
    Gzip,
    /// Plain JSON lines.
    None,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "zstd" => Ok(Self::Zstd),
            "gzip" | "gz" => Ok(Self::Gzip),
            "none" => Ok(Self::None),
            other => Err(format!("unknown compression {other:?}: zstd, gzip or none")),
        }
    }
}

/// What to dump.
///
/// ```
/// let opts = fetchq_backup::DumpOptions::queues(["a", "b"]).include_logs(true);
/// assert_eq!(opts.queues.len(), 2);
/// let all = fetchq_backup::DumpOptions::all();
/// assert!(all.all);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Queues to dump, in this order.
    pub queues: Vec<String>,
    /// Every queue instead (in name order).
    pub all: bool,
    /// Compression of the file.
    pub compression: Compression,
    /// Include each queue's error log.
    pub include_logs: bool,
    /// Include each queue's metric snapshots.
    pub include_metrics: bool,
}

impl DumpOptions {
    /// These queues.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self {
            queues: names.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Every queue.
    pub fn all() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// With or without the error logs.
    pub fn include_logs(mut self, yes: bool) -> Self {
        self.include_logs = yes;
        self
    }

    /// With or without the metric snapshots.
    pub fn include_metrics(mut self, yes: bool) -> Self {
        self.include_metrics = yes;
        self
    }

    /// With this compression.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
}

/// What a dump wrote.
#[derive(Debug, Clone)]
pub struct DumpSummary {
    /// The header written (queues, counts, versions).
    pub header: Header,
    /// Data lines written (documents, logs, snapshots).
    pub rows: i64,
    /// Size of the uncompressed stream.
    pub bytes_uncompressed: u64,
}

/// What a restore does when a queue of the file already exists.
///
/// ```
/// use std::str::FromStr;
/// assert_eq!(fetchq_backup::OnConflict::from_str("skip"), Ok(fetchq_backup::OnConflict::Skip));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Refuse the whole restore (default): nothing changes.
    #[default]
    Fail,
    /// Keep the existing queue's settings and documents; add the documents
    /// whose subject it does not have.
    Skip,
    /// Take the file's settings; a document of the file replaces the existing
    /// one with its subject; documents not in the file stay.
    Replace,
}

impl std::str::FromStr for OnConflict {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            "replace" => Ok(Self::Replace),
            other => Err(format!(
                "unknown conflict mode {other:?}: skip, replace or fail"
            )),
        }
    }
}

/// How to restore.
///
/// ```
/// let opts = fetchq_backup::RestoreOptions::default().rename("copy").on_conflict(fetchq_backup::OnConflict::Skip);
/// assert_eq!(opts.queue.as_deref(), Some("copy"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore the file's only queue under this name.
    pub queue: Option<String>,
    /// When a queue exists.
    pub on_conflict: OnConflict,
}

impl RestoreOptions {
    /// Restore the single queue of the file under `name`.
    pub fn rename(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// What to do with an existing queue.
    pub fn on_conflict(mut self, mode: OnConflict) -> Self {
        self.on_conflict = mode;
        self
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The file's header.
    pub header: Header,
    /// Data lines read.
    pub rows: i64,
    /// Per queue, in the file's order.
    pub queues: Vec<RestoredQueue>,
}

/// What a restore did to one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredQueue {
    /// The queue's name in the file.
    pub source: String,
    /// The queue restored into.
    pub name: String,
    /// Whether the restore created it.
    pub created: bool,
    /// Documents in the file.
    pub docs_in_file: i64,
    /// Documents inserted or replaced (the others were skipped).
    pub docs_written: i64,
    /// Documents that were active in the dump and are now pending, due now.
    pub active_restored_as_due: i64,
    /// Error log entries added.
    pub logs: i64,
    /// Metric snapshots added.
    pub metrics: i64,
    /// Cron schedules of the queue in the file.
    pub schedules_in_file: i64,
    /// Schedules created or replaced (the others existed and were kept,
    /// under [`OnConflict::Skip`]).
    pub schedules_written: i64,
}

/// Dumps queues to `out` and returns it (flushed) with a summary. The writing
/// runs on a blocking thread; `out` can be a file, stdout or any `Write`.
///
/// # Errors
///
/// [`Error::Fetchq`] for an unknown queue, [`Error::Write`] when the output
/// fails, [`Error::Database`] when the database does. The output then has no
/// trailer, so a restore refuses it.
pub async fn dump<W: Write + Send + 'static>(
    pool: &PgPool,
    opts: &DumpOptions,
    out: W,
) -> Result<DumpSummary> {
    dump::dump(pool, opts, out)
        .await
        .map(|(_, summary)| summary)
}

/// Like [`dump`], also giving the output back (to sync or rename a file).
///
/// # Errors
///
/// As [`dump`].
pub async fn dump_into<W: Write + Send + 'static>(
    pool: &PgPool,
    opts: &DumpOptions,
    out: W,
) -> Result<(W, DumpSummary)> {
    dump::dump(pool, opts, out).await
}

/// Restores a dump read from `input` (zstd, gzip or plain, detected), in one
/// transaction.
///
/// # Errors
///
/// [`Error::NotADump`], [`Error::UnsupportedVersion`], [`Error::Truncated`],
/// [`Error::ChecksumMismatch`], [`Error::Corrupt`], [`Error::Read`] for a bad
/// file; [`Error::QueueExists`] under [`OnConflict::Fail`];
/// [`Error::InvalidArgument`] for `--queue` with several queues;
/// [`Error::ScheduleExists`] under [`OnConflict::Fail`] when a schedule of the
/// file has the name of an existing one. In every case the database is
/// unchanged.
pub async fn restore<R: Read + Send + 'static>(
    pool: &PgPool,
    opts: &RestoreOptions,
    input: R,
) -> Result<RestoreSummary> {
    restore::restore(pool, opts, input).await
}
