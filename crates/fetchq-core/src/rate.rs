//! Per-queue rate limits: at most `n` leases in any window of `per`, across
//! every worker and connection (see `sql/migrations/0016_rate_limits.sql`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;

use crate::error::{Error, Result};
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// The most documents a rate limit may allow per window.
pub const MAX_RATE_LIMIT: u32 = 100_000;

/// The longest window of a rate limit (7 days).
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// A rate limit: at most [`limit`](Self::limit) documents leased in any
/// window of [`per`](Self::per).
///
/// It reads and prints as `N/WINDOW`, the window in
/// [humantime](https://docs.rs/humantime) units, or a bare unit for one of it:
///
/// ```
/// use std::time::Duration;
/// use fetchq_core::RateLimit;
///
/// let five_a_second: RateLimit = "5/s".parse().unwrap();
/// assert_eq!(five_a_second, RateLimit::new(5, Duration::from_secs(1)).unwrap());
/// let slow: RateLimit = "100/10m".parse().unwrap();
/// assert_eq!(slow.per(), Duration::from_secs(600));
/// assert_eq!(slow.to_string(), "100/10m");
/// assert!("0/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    limit: u32,
    per: Duration,
}

impl RateLimit {
    /// `limit` documents (1 to [`MAX_RATE_LIMIT`]) per window `per`
    /// (at least 1 ms, at most [`MAX_RATE_WINDOW`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] outside those bounds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = fetchq_core::RateLimit::new(20, Duration::from_secs(1)).unwrap();
    /// assert_eq!(r.limit(), 20);
    /// assert!(fetchq_core::RateLimit::new(20, Duration::ZERO).is_err());
    /// ```
    pub fn new(limit: u32, per: Duration) -> Result<Self> {
        let problem = if !(1..=MAX_RATE_LIMIT).contains(&limit) {
            format!("rate limit must be 1 to {MAX_RATE_LIMIT} documents, got {limit}")
        } else if per < Duration::from_millis(1) || per > MAX_RATE_WINDOW {
            format!(
                "rate limit window must be 1ms to 7 days, got {}",
                humantime::format_duration(per)
            )
        } else {
            return Ok(Self { limit, per });
        };
        Err(Error::InvalidArgument { message: problem })
    }

    /// Documents allowed per window.
    ///
    /// ```
    /// assert_eq!("3/s".parse::<fetchq_core::RateLimit>().unwrap().limit(), 3);
    /// ```
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window.
    ///
    /// ```
    /// let r: fetchq_core::RateLimit = "3/2s".parse().unwrap();
    /// assert_eq!(r.per(), std::time::Duration::from_secs(2));
    /// ```
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The limit as the database stores it (count and seconds), `None` when
    /// the row has no limit.
    pub(crate) fn from_db(limit: Option<i32>, per_secs: Option<f64>) -> Option<Self> {
        let limit = u32::try_from(limit?).ok()?;
        let per = Duration::try_from_secs_f64(per_secs?).ok()?;
        Some(Self { limit, per })
    }
}

impl FromStr for RateLimit {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument {
            message: format!(
                "a rate limit reads N/WINDOW, like 5/s, 20/1s or 100/10m, got {:?}",
                text.chars().take(40).collect::<String>()
            ),
        };
        let (n, window) = text.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        // a bare unit means one of it: "s" is "1s"
        let starts_with_digit = window.chars().next().is_some_and(|c| c.is_ascii_digit());
        let per = if starts_with_digit {
            humantime::parse_duration(window)
        } else {
            humantime::parse_duration(&format!("1{window}"))
        }
        .map_err(|_| bad())?;
        Self::new(limit, per)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, humantime::format_duration(self.per))
    }
}

impl Client {
    /// Limits the queue to `rate.limit()` leases in any window of
    /// `rate.per()`, counted across every process and connection picking it;
    /// `None` removes the limit. Picks beyond the limit lease nothing, and
    /// [`pick_answer`](Self::pick_answer) says when the next slot opens.
    ///
    /// The limit is exact (a sliding window of slot rows in PostgreSQL, see
    /// the migration), holds under any number of concurrent picks, and costs
    /// nothing on queues without one. Changing it keeps the most recent uses,
    /// so lowering the limit of a busy queue does not open a burst.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// client.queue_set_rate_limit("crawl", Some("5/s".parse()?)).await?;
    /// client.queue_set_rate_limit("crawl", None).await?; // unlimited again
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_rate_limit(&self, queue: &str, rate: Option<RateLimit>) -> Result<()> {
        validate_queue_name(queue)?;
        let limit = rate.map(|r| i32::try_from(r.limit).unwrap_or(i32::MAX));
        sqlx::query(sql!("queue_set_rate_limit"))
            .bind(queue)
            .bind(limit)
            .bind(rate.map(|r| r.per))
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// How long until the queue's next rate-limit slot opens (zero when one
    /// is free), `None` when the queue has no rate limit.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// if let Some(wait) = client.queue_rate_wait("crawl").await? {
    ///     println!("next slot in {wait:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_rate_wait(&self, queue: &str) -> Result<Option<Duration>> {
        validate_queue_name(queue)?;
        // FQ002 for a missing queue rather than "no limit"
        self.queue_status(queue).await?;
        let secs: Option<f64> = sqlx::query(sql!("queue_rate_wait"))
            .bind(queue)
            .fetch_one(self.exec())
            .await?
            .try_get(0)?;
        Ok(crate::batch::due_in(secs))
    }
}
