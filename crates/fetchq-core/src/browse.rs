//! Looking inside a queue: documents by filter with keyset paging, the error
//! log, and the history of metric snapshots. Reads only; nothing here takes a
//! lease or changes a document.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::doc::{DocState, Status};
use crate::error::{Error, Result};
use crate::per_queue::queue_error;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// Text PostgreSQL cannot hold (a NUL byte) is refused before it is sent.
pub(crate) fn check_text(what: &str, text: Option<&str>) -> Result<()> {
    match text {
        Some(t) if t.contains('\0') => Err(Error::InvalidArgument {
            message: format!("the {what} contains a NUL byte"),
        }),
        _ => Ok(()),
    }
}

impl DocFilter {
    /// Checks what the database cannot take (a NUL byte in the prefix).
    pub(crate) fn check(&self) -> Result<()> {
        check_text("subject prefix", self.subject_prefix.as_deref())
    }
}

/// Which documents of a queue a listing or a bulk action covers. Every field
/// left `None` matches everything.
///
/// ```
/// use fetchq_core::{DocFilter, Status};
/// let dead_v1 = DocFilter::new().status(Status::Dead).version(1).subject_prefix("https://");
/// # let _ = dead_v1;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocFilter {
    /// Only documents in this status.
    pub status: Option<Status>,
    /// Only documents of this version.
    pub version: Option<i32>,
    /// Only subjects that start with this text (matched literally: `%` and `_` are not wildcards).
    pub subject_prefix: Option<String>,
}

impl DocFilter {
    /// A filter that matches every document.
    ///
    /// ```
    /// assert_eq!(fetchq_core::DocFilter::new(), fetchq_core::DocFilter::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// Only documents in `status`.
    ///
    /// ```
    /// let dead = fetchq_core::DocFilter::new().status(fetchq_core::Status::Dead);
    /// assert_eq!(dead.status, Some(fetchq_core::Status::Dead));
    /// ```
    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }
    /// Only documents of `version`.
    ///
    /// ```
    /// assert_eq!(fetchq_core::DocFilter::new().version(2).version, Some(2));
    /// ```
    pub fn version(mut self, version: i32) -> Self {
        self.version = Some(version);
        self
    }
    /// Only subjects starting with `prefix`, matched literally (`%`, `_` and
    /// `\` are ordinary characters).
    ///
    /// ```
    /// let f = fetchq_core::DocFilter::new().subject_prefix("50%_off/");
    /// assert_eq!(f.subject_prefix.as_deref(), Some("50%_off/"));
    /// ```
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = Some(prefix.into());
        self
    }
}

/// One row of a queue's error log, from [`Client::log_list`].
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// for entry in client.log_list("avengers", Some("ironman"), None, 50).await? {
///     println!("{} {}: {}", entry.id, entry.created_at, entry.message);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Increasing id: page with `before`.
    pub id: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// The document's subject.
    pub subject: String,
    /// The message.
    pub message: String,
    /// Structured details, if any.
    pub details: Option<Value>,
    /// The writer's reference (worker id...), if any.
    pub ref_id: Option<String>,
}

/// What [`Client::doc_count`] found.
///
/// ```
/// let c = fetchq_core::DocCount { matched: 100_000, capped: true };
/// assert!(c.capped);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocCount {
    /// Matching documents, at most the cap.
    pub matched: u64,
    /// More documents than the cap match.
    pub capped: bool,
}

/// One snapshot of a queue metric (written by the queue's `sts` maintenance job or [`Client::metric_snap`]).
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
/// for point in client.metric_history("avengers", day_ago, 1000).await? {
///     println!("{} {} = {}", point.created_at, point.metric, point.value);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The metric (`cnt`, `pnd`, `prc`...).
    pub metric: String,
    /// When the snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// The counter's value then.
    pub value: i64,
}

impl Client {
    /// Documents of `queue` matching `filter`, in subject order, starting after
    /// the subject `after` (keyset paging: pass the last subject of a page to
    /// get the next), at most `limit` (1 to 1000). Never counts the table: a
    /// page shorter than `limit` is the last one. As `fetchq.doc_list`.
    ///
    /// Pages walk the primary key. When the database sorts text by code point
    /// (collation `C`, `POSIX` or `C.UTF-8`, the default of the embedded
    /// server) a prefix is one range of it; in other collations the prefix is
    /// still matched exactly, but a page may read past the matching subjects.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidArgument`] (limit out of
    /// range, a NUL byte in the prefix or `after`), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// use fetchq_core::{DocFilter, Status};
    /// let filter = DocFilter::new().status(Status::Dead).subject_prefix("https://");
    /// let mut after: Option<String> = None;
    /// loop {
    ///     let page = client.doc_list("avengers", &filter, after.as_deref(), 1000).await?;
    ///     for doc in &page {
    ///         println!("{} {:?}", doc.subject, doc.status);
    ///     }
    ///     match page.last() {
    ///         Some(last) if page.len() == 1000 => after = Some(last.subject.clone()),
    ///         _ => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn doc_list(
        &self,
        queue: &str,
        filter: &DocFilter,
        after: Option<&str>,
        limit: i32,
    ) -> Result<Vec<DocState>> {
        validate_queue_name(queue)?;
        filter.check()?;
        check_text("subject after", after)?;
        let rows = sqlx::query(sql!("doc_list"))
            .bind(queue)
            .bind(filter.status.map(Status::code))
            .bind(filter.version)
            .bind(filter.subject_prefix.as_deref())
            .bind(after)
            .bind(limit)
            .fetch_all(self.exec())
            .await
            .map_err(|e| queue_error(e, queue))?;
        rows.iter().map(DocState::from_row).collect()
    }

    /// How many documents of `queue` match `filter`, counting at most `cap`
    /// (1 to 10,000,000): what a bulk action over that filter will touch.
    /// The work stops at the cap, whatever the size of the queue. As
    /// `fetchq.doc_count`.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidArgument`] (cap out of
    /// range, a NUL byte in the prefix), database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// use fetchq_core::{DocFilter, Status};
    /// let dead = client.doc_count("avengers", &DocFilter::new().status(Status::Dead), 100_000).await?;
    /// if dead.capped {
    ///     println!("more than {} dead documents", dead.matched);
    /// } else {
    ///     println!("{} dead documents", dead.matched);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn doc_count(&self, queue: &str, filter: &DocFilter, cap: i32) -> Result<DocCount> {
        validate_queue_name(queue)?;
        filter.check()?;
        let row = sqlx::query(sql!("doc_count"))
            .bind(queue)
            .bind(filter.status.map(Status::code))
            .bind(filter.version)
            .bind(filter.subject_prefix.as_deref())
            .bind(cap)
            .fetch_one(self.exec())
            .await
            .map_err(|e| queue_error(e, queue))?;
        Ok(DocCount {
            matched: u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
            capped: row.try_get(1)?,
        })
    }

    /// The error log of `queue`, newest first: only `subject`'s rows if given,
    /// only rows with an id below `before` if given, at most `limit` (1 to 1000).
    /// Pass the last id of a page as `before` to get the next. As `fetchq.log_list`.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidArgument`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let newest = client.log_list("avengers", None, None, 100).await?;
    /// if let Some(last) = newest.last() {
    ///     let older = client.log_list("avengers", None, Some(last.id), 100).await?;
    /// #   let _ = older;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn log_list(
        &self,
        queue: &str,
        subject: Option<&str>,
        before: Option<i64>,
        limit: i32,
    ) -> Result<Vec<LogEntry>> {
        validate_queue_name(queue)?;
        check_text("subject", subject)?;
        let rows = sqlx::query(sql!("log_list"))
            .bind(queue)
            .bind(subject)
            .bind(before)
            .bind(limit)
            .fetch_all(self.exec())
            .await
            .map_err(|e| queue_error(e, queue))?;
        rows.iter()
            .map(|row| {
                Ok(LogEntry {
                    id: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    subject: row.try_get(2)?,
                    message: row.try_get(3)?,
                    details: row.try_get(4)?,
                    ref_id: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// The metric snapshots of `queue` taken at or after `since`, oldest first,
    /// at most `limit` (1 to 10000). Snapshots taken together share their
    /// time. As `fetchq.metric_history`.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidArgument`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    /// let pending: Vec<i64> = client
    ///     .metric_history("avengers", hour_ago, 10_000)
    ///     .await?
    ///     .into_iter()
    ///     .filter(|p| p.metric == "pnd")
    ///     .map(|p| p.value)
    ///     .collect();
    /// # let _ = pending;
    /// # Ok(()) }
    /// ```
    pub async fn metric_history(
        &self,
        queue: &str,
        since: DateTime<Utc>,
        limit: i32,
    ) -> Result<Vec<MetricPoint>> {
        validate_queue_name(queue)?;
        let rows = sqlx::query(sql!("metric_history"))
            .bind(queue)
            .bind(since)
            .bind(limit)
            .fetch_all(self.exec())
            .await
            .map_err(|e| queue_error(e, queue))?;
        rows.iter()
            .map(|row| {
                Ok(MetricPoint {
                    metric: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    value: row.try_get(2)?,
                })
            })
            .collect()
    }
}
