//! The error type of every fetchq operation.

use std::borrow::Cow;

/// A specialized `Result` whose error is [`Error`].
///
/// ```
/// fn parse(name: &str) -> fetchq_core::Result<()> {
///     fetchq_core::validate_queue_name(name)
/// }
/// assert!(parse("ok").is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to fetchq.
///
/// The SQL engine raises errors with stable SQLSTATE codes of class `FQ`
/// (see [`Error::sqlstate`]); they arrive here as typed variants instead of a
/// generic database error, so callers can match on them.
///
/// # Examples
///
/// ```
/// use fetchq_core::{validate_queue_name, Error};
///
/// let err = validate_queue_name("Robert'); DROP TABLE students;--").unwrap_err();
/// assert!(matches!(err, Error::InvalidQueueName { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A queue name that is not 1 to 40 characters of `a-z`, `0-9` and `_`
    /// starting with a letter (SQLSTATE `FQ001`).
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The rejected name (possibly shortened).
        name: String,
        /// Why it was rejected.
        reason: Cow<'static, str>,
    },
    /// The queue does not exist (SQLSTATE `FQ002`).
    #[error("queue {queue:?} does not exist: create it first")]
    QueueNotFound {
        /// The queue that was named.
        queue: String,
    },
    /// A subject that is empty or longer than 255 characters (SQLSTATE `FQ003`).
    #[error("invalid subject: {message}")]
    InvalidSubject {
        /// What the engine said.
        message: String,
    },
    /// An argument out of range: a negative version, a zero lease, a limit
    /// below 1, a malformed batch... (SQLSTATE `FQ004`).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What the engine said.
        message: String,
    },
    /// A payload larger than the queue's `max_payload_size` (SQLSTATE `FQ005`).
    #[error("payload too large: {message}")]
    PayloadTooLarge {
        /// What the engine said, with both sizes.
        message: String,
    },
    /// The subject already exists in the queue (only from operations that
    /// insist on a new document, such as [`Client::insert`](crate::Client::insert)).
    #[error("document {subject:?} already exists in queue {queue:?}")]
    Duplicate {
        /// The queue.
        queue: String,
        /// The subject that is taken.
        subject: String,
    },
    /// The document does not exist.
    #[error("document {subject:?} not found in queue {queue:?}")]
    NotFound {
        /// The queue.
        queue: String,
        /// The missing subject.
        subject: String,
    },
    /// The lease on a picked document is no longer held: it expired and the
    /// document was rescued or picked by another worker, or it was already
    /// resolved. Nothing was changed.
    #[error("lease lost on document {subject:?} of queue {queue:?}: the result was discarded")]
    LeaseLost {
        /// The queue.
        queue: String,
        /// The document whose lease was lost.
        subject: String,
    },
    /// A payload could not be serialized or deserialized.
    #[error("payload (de)serialization failed: {0}")]
    Payload(#[from] serde_json::Error),
    /// The database holds a newer fetchq schema than this build knows.
    #[error(
        "the database has fetchq schema version {found}, newer than the {supported} this build \
         supports: upgrade fetchq instead of downgrading the schema"
    )]
    SchemaTooNew {
        /// Highest schema version found in the database.
        found: i32,
        /// Highest schema version this build ships.
        supported: i32,
    },
    /// An applied migration's text differs from the one shipped in this build.
    #[error(
        "migration {version} ({name}) differs from the one applied to the database (checksum mismatch)"
    )]
    MigrationChanged {
        /// The migration version.
        version: i32,
        /// Its name.
        name: String,
    },
    /// A cron expression that does not parse, or never matches.
    #[error("invalid cron expression {expression:?}: {reason}")]
    InvalidCron {
        /// The expression.
        expression: String,
        /// Why it was refused (croner's message).
        reason: String,
    },
    /// A time zone that is not an IANA name known to chrono-tz.
    #[error("unknown time zone {time_zone:?}: use an IANA name such as UTC or Europe/Stockholm")]
    UnknownTimeZone {
        /// The name given.
        time_zone: String,
    },
    /// Any other database error (connection, SQL...).
    #[error(transparent)]
    Database(sqlx::Error),
}

impl Error {
    /// Whether trying the same call again later may succeed: the server is
    /// unreachable, restarting or shutting down, the pool had no free
    /// connection within its acquire timeout, the transaction lost a
    /// deadlock or serialization conflict, or it was cancelled by
    /// `statement_timeout`, `lock_timeout` or a cancel request. Everything else (bad input, a
    /// missing queue, a lost lease, a payload PostgreSQL refuses) fails the
    /// same way every time and must not be retried forever.
    ///
    /// ```
    /// use fetchq_core::Error;
    ///
    /// let timeout = Error::Database(sqlx::Error::PoolTimedOut);
    /// assert!(timeout.is_transient());
    /// let bad = Error::InvalidArgument { message: "version must be 0 or more".into() };
    /// assert!(!bad.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => is_transient_sqlx(e),
            _ => false,
        }
    }

    /// The fetchq SQLSTATE code this error corresponds to, if it is one raised
    /// by the SQL engine.
    ///
    /// ```
    /// use fetchq_core::Error;
    ///
    /// let err = Error::QueueNotFound { queue: "nope".into() };
    /// assert_eq!(err.sqlstate(), Some("FQ002"));
    /// ```
    pub fn sqlstate(&self) -> Option<&'static str> {
        match self {
            Error::InvalidQueueName { .. } => Some(codes::INVALID_QUEUE_NAME),
            Error::QueueNotFound { .. } => Some(codes::QUEUE_NOT_FOUND),
            Error::InvalidSubject { .. } => Some(codes::INVALID_SUBJECT),
            // the engine raises FQ004 for what it can check of these too
            Error::InvalidArgument { .. }
            | Error::InvalidCron { .. }
            | Error::UnknownTimeZone { .. } => Some(codes::INVALID_ARGUMENT),
            Error::PayloadTooLarge { .. } => Some(codes::PAYLOAD_TOO_LARGE),
            _ => None,
        }
    }
}

/// The SQLSTATE codes raised by the SQL engine.
///
/// ```
/// assert_eq!(fetchq_core::codes::QUEUE_NOT_FOUND, "FQ002");
/// ```
pub mod codes {
    /// Invalid queue name.
    ///
    /// ```
    /// assert_eq!(fetchq_core::codes::INVALID_QUEUE_NAME, "FQ001");
    /// ```
    pub const INVALID_QUEUE_NAME: &str = "FQ001";
    /// Queue does not exist.
    ///
    /// ```
    /// assert_eq!(fetchq_core::codes::QUEUE_NOT_FOUND, "FQ002");
    /// ```
    pub const QUEUE_NOT_FOUND: &str = "FQ002";
    /// Subject empty or too long.
    ///
    /// ```
    /// assert_eq!(fetchq_core::codes::INVALID_SUBJECT, "FQ003");
    /// ```
    pub const INVALID_SUBJECT: &str = "FQ003";
    /// Argument out of range.
    ///
    /// ```
    /// assert_eq!(fetchq_core::codes::INVALID_ARGUMENT, "FQ004");
    /// ```
    pub const INVALID_ARGUMENT: &str = "FQ004";
    /// Payload larger than the queue allows.
    ///
    /// ```
    /// assert_eq!(fetchq_core::codes::PAYLOAD_TOO_LARGE, "FQ005");
    /// ```
    pub const PAYLOAD_TOO_LARGE: &str = "FQ005";
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        let Some(db) = err.as_database_error() else {
            return Error::Database(err);
        };
        let message = db.message().to_owned();
        match db.code().as_deref() {
            Some(codes::INVALID_QUEUE_NAME) => Error::InvalidQueueName {
                name: quoted_part(&message),
                reason: "use 1 to 40 characters of a-z, 0-9 and _, starting with a letter".into(),
            },
            Some(codes::QUEUE_NOT_FOUND) => Error::QueueNotFound {
                queue: quoted_part(&message),
            },
            Some(codes::INVALID_SUBJECT) => Error::InvalidSubject { message },
            Some(codes::INVALID_ARGUMENT) => Error::InvalidArgument { message },
            Some(codes::PAYLOAD_TOO_LARGE) => Error::PayloadTooLarge { message },
            // text PostgreSQL cannot store: a NUL byte, or \u0000 in JSON
            Some("22021" | "22P05") => Error::InvalidArgument { message },
            _ => Error::Database(err),
        }
    }
}

/// The part of an engine message between the first pair of quotes.
fn quoted_part(message: &str) -> String {
    let quote = if message.contains('"') { '"' } else { '\'' };
    message
        .split(quote)
        .nth(1)
        .map_or_else(|| message.to_owned(), str::to_owned)
}

/// Connection-level failures and lost concurrency races: retrying may succeed.
fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(_) => true,
        _ => e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| {
                // 08: connection exception; 57P: operator intervention (admin
                // shutdown, crash shutdown, cannot connect now); 53: insufficient
                // resources (too many connections, out of memory or disk);
                // 40001/40P01: serialization failure and deadlock; 57014:
                // statement_timeout or a cancel request; 55P03: lock_timeout
                c.starts_with("08")
                    || c.starts_with("57P")
                    || c.starts_with("53")
                    || c == "40001"
                    || c == "40P01"
                    || c == "57014"
                    || c == "55P03"
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_transient_and_bad_input_is_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::Database(sqlx::Error::Io(io)).is_transient());
        assert!(Error::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!Error::Database(sqlx::Error::RowNotFound).is_transient());
        assert!(
            !Error::LeaseLost {
                queue: "q".into(),
                subject: "s".into()
            }
            .is_transient()
        );
        assert!(!Error::QueueNotFound { queue: "q".into() }.is_transient());
    }
}
