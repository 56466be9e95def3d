//! Queues: names, lifecycle and settings.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{Error, Result};
use crate::{Client, sql};

/// Checks a queue name the way the SQL engine does: 1 to 40 characters of
/// `a-z`, `0-9` and `_`, starting with a letter. Names become parts of table
/// names, so nothing else is accepted.
///
/// # Errors
///
/// [`Error::InvalidQueueName`] with the reason.
///
/// ```
/// use fetchq_core::validate_queue_name;
///
/// assert!(validate_queue_name("avengers_v2").is_ok());
/// assert!(validate_queue_name("Avengers").is_err());
/// assert!(validate_queue_name("a\"; DROP TABLE x; --").is_err());
/// ```
pub fn validate_queue_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name.len() > 40 {
        Some("the name is longer than 40 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("the name must start with a letter a-z")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Some("only a-z, 0-9 and _ are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidQueueName {
            name: name.chars().take(80).collect(),
            reason: reason.into(),
        }),
    }
}

/// A queue's main settings, from `fetchq.queue_status`.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let q: fetchq_core::QueueInfo = client.queue_status("avengers").await?;
/// println!("{} max_attempts={}", q.name, q.max_attempts);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    /// Numeric id.
    pub id: i32,
    /// Name.
    pub name: String,
    /// False while the queue is paused.
    pub is_active: bool,
    /// The version workers target by default.
    pub current_version: i32,
    /// Failed attempts before a document is dead.
    pub max_attempts: i32,
    /// How long error logs are kept.
    pub logs_retention: Duration,
    /// When the queue was created.
    pub created_at: DateTime<Utc>,
    /// Largest payload accepted, in bytes.
    pub max_payload_size: i32,
    /// Base delay of the retry backoff of rejected documents.
    pub retry_delay: Duration,
    /// Cap of the retry backoff.
    pub retry_delay_max: Duration,
    /// Spread of the retry backoff (a fraction from 0 to 1).
    pub retry_jitter: f64,
    /// The rate limit of its picks, if any (see
    /// [`Client::queue_set_rate_limit`]).
    pub rate_limit: Option<crate::RateLimit>,
    /// The most active documents of one key, if capped (see
    /// [`Client::queue_set_key_concurrency`]).
    pub key_concurrency: Option<i32>,
    /// What happens to its completed documents (see
    /// [`Client::queue_set_completed_retention`]).
    pub completed_retention: crate::Retention,
}

impl QueueInfo {
    fn from_row(row: &PgRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            is_active: row.try_get(2)?,
            current_version: row.try_get(3)?,
            max_attempts: row.try_get(4)?,
            logs_retention: seconds(row.try_get(5)?),
            created_at: row.try_get(6)?,
            max_payload_size: row.try_get(7)?,
            retry_delay: seconds(row.try_get(8)?),
            retry_delay_max: seconds(row.try_get(9)?),
            retry_jitter: row.try_get(10)?,
            rate_limit: crate::RateLimit::from_db(row.try_get(11)?, row.try_get(12)?),
            key_concurrency: row.try_get(13)?,
            completed_retention: crate::Retention::from_db(row.try_get(14)?),
        })
    }
}

/// An interval the database gave in seconds (never negative for these settings).
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or_default()
}

fn positive(affected: i32) -> bool {
    affected > 0
}

impl Client {
    /// Creates a queue (its tables, indexes and maintenance jobs). Returns
    /// false, changing nothing, when it already exists.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// assert!(client.queue_create("avengers").await?);
    /// assert!(!client.queue_create("avengers").await?);
    /// # Ok(()) }
    /// ```
    pub async fn queue_create(&self, queue: &str) -> Result<bool> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_create"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Drops a queue and everything in it. Returns false when it did not exist.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let existed = client.queue_drop("avengers").await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_drop(&self, queue: &str) -> Result<bool> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_drop"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// One queue's settings.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidQueueName`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let q = client.queue_status("avengers").await?;
    /// assert_eq!(q.name, "avengers");
    /// # Ok(()) }
    /// ```
    pub async fn queue_status(&self, queue: &str) -> Result<QueueInfo> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_status"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        QueueInfo::from_row(&row)
    }

    /// Every queue, by name.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// for q in client.queue_list().await? {
    ///     println!("{}", q.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_list(&self) -> Result<Vec<QueueInfo>> {
        let rows = sqlx::query(sql!("queue_list"))
            .fetch_all(self.exec())
            .await?;
        rows.iter().map(QueueInfo::from_row).collect()
    }

    /// Sets how many consecutive failed attempts (rejects, expired leases) a
    /// document gets before it is dead (default 5).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] below 1, [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_set_max_attempts("avengers", 3).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_max_attempts(&self, queue: &str, max_attempts: i32) -> Result<()> {
        self.set(sql!("queue_set_max_attempts"), queue, max_attempts)
            .await
    }

    /// Records the version this queue's workers target by default.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when negative, [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_set_current_version("avengers", 2).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_current_version(&self, queue: &str, version: i32) -> Result<()> {
        self.set(sql!("queue_set_current_version"), queue, version)
            .await
    }

    /// Sets how long error logs are kept (default 24 hours).
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_set_logs_retention("avengers", std::time::Duration::from_secs(7 * 86_400)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_logs_retention(&self, queue: &str, retention: Duration) -> Result<()> {
        self.set(sql!("queue_set_logs_retention"), queue, retention)
            .await
    }

    /// Sets the largest payload the queue accepts, in bytes as stored (default 1 MiB).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] below 16, [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_set_max_payload_size("avengers", 64 * 1024).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_max_payload_size(&self, queue: &str, max_bytes: i32) -> Result<()> {
        self.set(sql!("queue_set_max_payload_size"), queue, max_bytes)
            .await
    }

    async fn set<T>(&self, statement: &'static str, queue: &str, value: T) -> Result<()>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        validate_queue_name(queue)?;
        sqlx::query(statement)
            .bind(queue)
            .bind(value)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Sets the backoff of rejected documents: they are retried after
    /// `delay * 2^(attempts-1)`, capped at `max_delay`, spread by `± jitter`
    /// (a fraction from 0 to 1). Defaults: 1 s, 1 h, 0.2.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`], [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_set_retry_backoff("avengers", Duration::from_secs(10), Duration::from_secs(3600), 0.1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_retry_backoff(
        &self,
        queue: &str,
        delay: Duration,
        max_delay: Duration,
        jitter: f64,
    ) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(sql!("queue_set_retry_backoff"))
            .bind(queue)
            .bind(delay)
            .bind(max_delay)
            .bind(jitter)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Caps how many documents with the same key
    /// ([`NewDoc::key`](crate::NewDoc::key)) are active at once, across every
    /// worker; `None` removes the cap. Documents without a key are not capped.
    /// A lease that expires or is resolved frees its key's place.
    ///
    /// Setting a cap builds two indexes of the queue once (writes to it wait
    /// meanwhile). Picks of a capped queue skip full keys without reading
    /// their documents (one index probe per key), and need READ COMMITTED.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] outside 1 to 10,000,
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_set_key_concurrency("crawl", Some(2)).await?; // 2 at a time per host
    /// client
    ///     .push("crawl", &fetchq_core::NewDoc::new("https://example.com/a").key("example.com"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_key_concurrency(&self, queue: &str, cap: Option<i32>) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(sql!("queue_set_key_concurrency"))
            .bind(queue)
            .bind(cap)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Pauses a queue: picks return nothing until [`queue_resume`](Self::queue_resume);
    /// pushing still works. Returns false when it was already paused.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_pause("avengers").await?;
    /// // ... deploy ...
    /// client.queue_resume("avengers").await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_pause(&self, queue: &str) -> Result<bool> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_pause"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        Ok(positive(row.try_get(0)?))
    }

    /// Resumes a paused queue. Returns false when it was not paused.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_resume("avengers").await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_resume(&self, queue: &str) -> Result<bool> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_resume"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?;
        Ok(positive(row.try_get(0)?))
    }

    /// Deletes every document of a queue (with `empty`, also its logs and
    /// metric snapshots) and resets its counters.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_truncate("avengers", false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_truncate(&self, queue: &str, empty: bool) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(sql!("queue_truncate"))
            .bind(queue)
            .bind(empty)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Deletes error logs older than `older_than` (`None`: the queue's
    /// retention). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let deleted = client.queue_drop_logs("avengers", Some(std::time::Duration::from_secs(3600))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_drop_logs(&self, queue: &str, older_than: Option<Duration>) -> Result<i32> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("queue_drop_logs"))
            .bind(queue)
            .bind(older_than)
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::validate_queue_name;

    #[test]
    fn queue_names_follow_the_engine_rule() {
        for ok in [
            "a",
            "avengers",
            "a_1",
            "q0123456789012345678901234567890123456789"[..40].as_ref(),
        ] {
            assert!(validate_queue_name(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "1a",
            "_a",
            "A",
            "a-b",
            "a b",
            "a;drop",
            "é",
            "a\"b",
            "a'b",
            "a$$b",
            "q01234567890123456789012345678901234567890",
        ] {
            assert!(validate_queue_name(bad).is_err(), "{bad} should be invalid");
        }
    }
}
