//! Typed errors of dump and restore.

/// What went wrong in a dump or a restore. A failed restore never changes the
/// database: everything it did is rolled back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A fetchq call failed (unknown queue, bad name, ...).
    #[error(transparent)]
    Fetchq(#[from] fetchq_core::Error),
    /// Writing the dump failed (disk full, closed pipe, ...).
    #[error("cannot write the dump: {0}")]
    Write(#[source] std::io::Error),
    /// Reading or decompressing the dump failed: the compressed data is
    /// corrupted or cut short, or the input could not be read.
    #[error("cannot read the dump (corrupted or truncated compressed data?): {0}")]
    Read(#[source] std::io::Error),
    /// The input is not a fetchq dump at all.
    #[error("not a fetchq dump: {0}")]
    NotADump(String),
    /// A fetchq dump of a format version this build does not read.
    #[error("unsupported dump format version {found} (this build reads versions 1 to {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// The newest version this build reads (it reads every one from 1).
        supported: u32,
    },
    /// The file ends before its trailer: it was cut short.
    #[error("the dump is truncated: {0}")]
    Truncated(String),
    /// The content does not match the trailer's checksum: it was altered.
    #[error(
        "checksum mismatch: the dump was corrupted or altered (trailer says {expected}, content is {actual})"
    )]
    ChecksumMismatch {
        /// Checksum in the trailer.
        expected: String,
        /// Checksum of the content read.
        actual: String,
    },
    /// The file is structurally wrong (bad line, wrong row counts, data after the end).
    #[error("corrupted dump: {0}")]
    Corrupt(String),
    /// `--on-conflict fail` and the queue already exists.
    #[error(
        "queue \"{0}\" already exists (choose --on-conflict skip or replace, or --queue NEW_NAME)"
    )]
    QueueExists(String),
    /// `--on-conflict fail` and a schedule of the file has the name of an
    /// existing schedule.
    #[error(
        "schedule \"{0}\" already exists (choose --on-conflict skip to keep it or replace to overwrite it)"
    )]
    ScheduleExists(String),
    /// The dump comes from a newer schema than the database's.
    #[error(
        "the dump comes from schema {file}, newer than this database's schema {database}: run `fetchq init` with a newer fetchq first"
    )]
    SchemaTooNew {
        /// Schema version of the dump.
        file: i32,
        /// Schema version of the database.
        database: i32,
    },
    /// A wrong option (for example `--queue` with a multi-queue file).
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
