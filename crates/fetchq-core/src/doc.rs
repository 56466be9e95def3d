//! Documents: adding them (push, push_many, append, upsert) and reading one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgExecutor, Postgres, Row};

use crate::error::{Error, Result};
use crate::per_queue::{per_queue, queue_error, statement};
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// When a document should run next.
///
/// ```
/// use std::time::Duration;
/// use fetchq_core::Schedule;
///
/// let every_second_day = Schedule::after(Duration::from_secs(2 * 86_400));
/// let asap = Schedule::now();
/// let at: Schedule = chrono::Utc::now().into();
/// # let _ = (every_second_day, asap, at);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Due now (the database's clock).
    #[default]
    Now,
    /// Due at this time; a time in the past jumps the line.
    At(DateTime<Utc>),
    /// Due this long after now (the database's clock).
    After(Duration),
}

impl Schedule {
    /// Due now.
    ///
    /// ```
    /// assert_eq!(fetchq_core::Schedule::now(), fetchq_core::Schedule::Now);
    /// ```
    pub fn now() -> Self {
        Schedule::Now
    }

    /// Due at `time`.
    ///
    /// ```
    /// let t = chrono::Utc::now() + chrono::Duration::hours(1);
    /// assert_eq!(fetchq_core::Schedule::at(t), fetchq_core::Schedule::At(t));
    /// ```
    pub fn at(time: DateTime<Utc>) -> Self {
        Schedule::At(time)
    }

    /// Due `delay` from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// let every_hour = fetchq_core::Schedule::after(Duration::from_secs(3600));
    /// # let _ = every_hour;
    /// ```
    pub fn after(delay: Duration) -> Self {
        Schedule::After(delay)
    }

    /// The (absolute time, delay) pair bound to the SQL: `coalesce($at, now() + $delay)`.
    pub(crate) fn binds(self) -> (Option<DateTime<Utc>>, Option<Duration>) {
        match self {
            Schedule::Now => (None, None),
            Schedule::At(t) => (Some(t), None),
            Schedule::After(d) => (None, Some(d)),
        }
    }
}

impl From<DateTime<Utc>> for Schedule {
    fn from(t: DateTime<Utc>) -> Self {
        Schedule::At(t)
    }
}

impl From<Duration> for Schedule {
    fn from(d: Duration) -> Self {
        Schedule::After(d)
    }
}

/// A document to add to a queue.
///
/// ```
/// use std::time::Duration;
/// use fetchq_core::NewDoc;
///
/// let doc = NewDoc::new("ironman")
///     .version(1)
///     .priority(10)
///     .at(Duration::from_secs(60))
///     .payload(serde_json::json!({"last_score": 20}));
/// assert_eq!(doc.subject(), "ironman");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewDoc {
    subject: String,
    version: i32,
    priority: i32,
    schedule: Schedule,
    payload: Value,
    key: Option<String>,
}

impl NewDoc {
    /// A document with this subject: version 0, priority 0, due now, payload `{}`.
    ///
    /// ```
    /// let doc = fetchq_core::NewDoc::new("ironman");
    /// assert_eq!(doc.subject(), "ironman");
    /// ```
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            version: 0,
            priority: 0,
            schedule: Schedule::Now,
            payload: Value::Object(Default::default()),
            key: None,
        }
    }

    /// The concurrency key (1 to 255 characters), such as the host a crawler
    /// fetches from: a queue with
    /// [`queue_set_key_concurrency`](crate::Client::queue_set_key_concurrency)
    /// never runs more than its cap of documents with one key at once.
    /// Default: none (no cap applies).
    ///
    /// ```
    /// let doc = fetchq_core::NewDoc::new("https://example.com/a").key("example.com");
    /// assert_eq!(doc.get_key(), Some("example.com"));
    /// ```
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The concurrency key, if any.
    ///
    /// ```
    /// assert_eq!(fetchq_core::NewDoc::new("a").get_key(), None);
    /// ```
    pub fn get_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The document version (0 or more); picks target one version.
    ///
    /// ```
    /// let doc = fetchq_core::NewDoc::new("ironman").version(2);
    /// # let _ = doc;
    /// ```
    pub fn version(mut self, version: i32) -> Self {
        self.version = version;
        self
    }

    /// The priority: higher is picked first among due documents.
    ///
    /// ```
    /// let urgent = fetchq_core::NewDoc::new("hulk").priority(10);
    /// # let _ = urgent;
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// When it is due (default: now).
    ///
    /// ```
    /// use std::time::Duration;
    /// let later = fetchq_core::NewDoc::new("ironman").at(Duration::from_secs(3600));
    /// let jump_the_line = fetchq_core::NewDoc::new("hulk").at(chrono::Utc::now() - chrono::Duration::days(1));
    /// # let _ = (later, jump_the_line);
    /// ```
    pub fn at(mut self, when: impl Into<Schedule>) -> Self {
        self.schedule = when.into();
        self
    }

    /// The JSON payload.
    ///
    /// ```
    /// let doc = fetchq_core::NewDoc::new("hulk").payload(serde_json::json!({"last_score": 18}));
    /// # let _ = doc;
    /// ```
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// The payload, serialized from any `Serialize` value.
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] when serialization fails.
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Profile { handle: String }
    ///
    /// let doc = fetchq_core::NewDoc::new("ironman").payload_from(&Profile { handle: "tony".into() })?;
    /// # Ok::<(), fetchq_core::Error>(())
    /// ```
    pub fn payload_from<T: Serialize + ?Sized>(self, payload: &T) -> Result<Self> {
        Ok(self.payload(serde_json::to_value(payload)?))
    }

    /// The subject.
    ///
    /// ```
    /// assert_eq!(fetchq_core::NewDoc::new("thor").subject(), "thor");
    /// ```
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// Document status codes, as stored (FetchQ v4 compatible).
///
/// ```
/// use fetchq_core::Status;
/// assert_eq!(Status::from_code(Status::Completed.code()), Some(Status::Completed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `-1`: killed or out of attempts; kept so its subject is never re-admitted.
    Dead,
    /// `0`: waiting for its `next_iteration`.
    Planned,
    /// `1`: due, waiting for a worker.
    Pending,
    /// `2`: leased by a worker.
    Active,
    /// `3`: completed.
    Completed,
}

impl Status {
    /// The numeric code.
    ///
    /// ```
    /// assert_eq!(fetchq_core::Status::Dead.code(), -1);
    /// ```
    pub fn code(self) -> i32 {
        match self {
            Status::Dead => -1,
            Status::Planned => 0,
            Status::Pending => 1,
            Status::Active => 2,
            Status::Completed => 3,
        }
    }

    /// The status of a numeric code.
    ///
    /// ```
    /// assert_eq!(fetchq_core::Status::from_code(2), Some(fetchq_core::Status::Active));
    /// assert_eq!(fetchq_core::Status::from_code(9), None);
    /// ```
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            -1 => Status::Dead,
            0 => Status::Planned,
            1 => Status::Pending,
            2 => Status::Active,
            3 => Status::Completed,
            _ => return None,
        })
    }
}

/// A document as stored, from [`Client::get`].
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let state: fetchq_core::DocState = client.get("avengers", "ironman").await?;
/// println!("{:?}, {} iterations", state.status, state.iterations);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DocState {
    /// Unique subject.
    pub subject: String,
    /// Version.
    pub version: i32,
    /// Priority.
    pub priority: i32,
    /// Status.
    pub status: Status,
    /// Consecutive picks without a successful resolution.
    pub attempts: i32,
    /// Resolutions so far.
    pub iterations: i64,
    /// Planned time, or the lease expiry while active.
    pub next_iteration: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last resolution.
    pub last_iteration: Option<DateTime<Utc>>,
    /// Payload.
    pub payload: Value,
    /// The document's key, for the queue's key concurrency (`None`: no key).
    pub key: Option<String>,
}

/// What [`Client::upsert`] did.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// use fetchq_core::{NewDoc, Upserted};
/// match client.upsert("avengers", &NewDoc::new("ironman")).await? {
///     Upserted::Inserted => println!("new"),
///     Upserted::Updated => println!("updated"),
///     Upserted::Unchanged => println!("held by a worker, left alone"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The subject was new: the document was pushed.
    Inserted,
    /// The document existed and was updated.
    Updated,
    /// The document is active (held by a worker) and was left alone.
    Unchanged,
}

fn check_queue(queue: &str) -> Result<()> {
    validate_queue_name(queue)
}

/// The engine's subject rule (1 to 255 characters), plus what PostgreSQL text
/// cannot hold (a NUL byte), checked before anything is sent.
/// A concurrency key: 1 to 255 characters, no NUL ([`Error::InvalidArgument`]).
pub(crate) fn check_key(key: Option<&str>) -> Result<()> {
    let Some(key) = key else { return Ok(()) };
    let chars = key.chars().count();
    let problem = if chars == 0 {
        "the key is empty"
    } else if chars > 255 {
        "the key is longer than 255 characters"
    } else if key.contains('\0') {
        "the key contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument {
        message: problem.to_owned(),
    })
}

pub(crate) fn check_subject(subject: &str) -> Result<()> {
    let chars = subject.chars().count();
    let problem = if chars == 0 {
        "the subject is empty"
    } else if chars > 255 {
        "the subject is longer than 255 characters"
    } else if subject.contains('\0') {
        "the subject contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidSubject {
        message: problem.to_owned(),
    })
}

/// The engine's version rule: 0 or more (pushes and picks).
pub(crate) fn check_version(version: i32) -> Result<()> {
    if version >= 0 {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        message: format!("version must be 0 or more, got {version}"),
    })
}

/// A batch error names the document's position (from 1), as doc_push_many does.
fn at_position(err: Error, position: usize) -> Error {
    match err {
        Error::InvalidSubject { message } => Error::InvalidSubject {
            message: format!("document at position {position} of the batch: {message}"),
        },
        Error::InvalidArgument { message } => Error::InvalidArgument {
            message: format!("document at position {position} of the batch: {message}"),
        },
        other => other,
    }
}

/// `doc_push` and `doc_upsert` take the same arguments: queue, subject, version,
/// priority, (absolute time, delay), payload.
fn doc_query<'q>(
    statement: &'q str,
    queue: &'q str,
    doc: &'q NewDoc,
) -> Query<'q, Postgres, PgArguments> {
    let (at, delay) = doc.schedule.binds();
    sqlx::query(statement)
        .bind(queue)
        .bind(&doc.subject)
        .bind(doc.version)
        .bind(doc.priority)
        .bind(at)
        .bind(delay)
        .bind(&doc.payload)
}

impl Client {
    /// Pushes a document. Returns false, changing nothing, when the subject
    /// already exists in the queue (whatever its status: completed and dead
    /// documents keep their subject until dropped).
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidSubject`], [`Error::InvalidArgument`],
    /// [`Error::PayloadTooLarge`], database errors.
    ///
    /// ```no_run
    /// # use fetchq_core::NewDoc;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// assert!(client.push("avengers", &NewDoc::new("hulk")).await?);
    /// assert!(!client.push("avengers", &NewDoc::new("hulk")).await?); // duplicate ignored
    /// # Ok(()) }
    /// ```
    pub async fn push(&self, queue: &str, doc: &NewDoc) -> Result<bool> {
        self.push_with(self.exec(), queue, doc).await
    }

    /// [`push`](Self::push) through any executor, e.g. `&mut *tx` to push
    /// inside your own transaction.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let mut tx = client.pool().begin().await?;
    /// client.push_with(&mut *tx, "mailer", &fetchq_core::NewDoc::new("welcome:ada")).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn push_with<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        queue: &str,
        doc: &NewDoc,
    ) -> Result<bool> {
        check_queue(queue)?;
        check_subject(&doc.subject)?;
        check_version(doc.version)?;
        check_key(doc.get_key())?;
        let statement = statement(per_queue!("push"), queue);
        let row = doc_query(&statement, queue, doc)
            .bind(doc.get_key())
            .fetch_one(self.caller(executor))
            .await
            .map_err(|e| queue_error(e, queue))?;
        Ok(row.try_get::<i32, _>(0)? > 0)
    }

    /// Like [`push`](Self::push), but a subject that already exists is an
    /// error ([`Error::Duplicate`]) instead of `false`.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] and those of [`push`](Self::push).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// match client.insert("avengers", &fetchq_core::NewDoc::new("ironman")).await {
    ///     Err(fetchq_core::Error::Duplicate { .. }) => println!("already queued"),
    ///     other => other?,
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn insert(&self, queue: &str, doc: &NewDoc) -> Result<()> {
        if self.push(queue, doc).await? {
            Ok(())
        } else {
            Err(Error::Duplicate {
                queue: queue.to_owned(),
                subject: doc.subject.clone(),
            })
        }
    }

    /// Pushes many documents in one statement (as `fetchq.doc_push_many`); the
    /// batch is validated whole before anything is written. Subjects already in
    /// the queue, or repeated in the batch, are skipped. Returns how many were
    /// added. Times are resolved on the database clock, like `push`.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push); an invalid document fails the whole batch.
    ///
    /// ```no_run
    /// # use fetchq_core::NewDoc;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let docs: Vec<NewDoc> = (0..1000).map(|i| NewDoc::new(format!("hero-{i}"))).collect();
    /// assert_eq!(client.push_many("avengers", &docs).await?, 1000);
    /// # Ok(()) }
    /// ```
    pub async fn push_many(&self, queue: &str, docs: &[NewDoc]) -> Result<u64> {
        self.push_many_with(self.exec(), queue, docs).await
    }

    /// [`push_many`](Self::push_many) through any executor.
    ///
    /// # Errors
    ///
    /// As [`push_many`](Self::push_many).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let mut tx = client.pool().begin().await?;
    /// let docs = [fetchq_core::NewDoc::new("a"), fetchq_core::NewDoc::new("b")];
    /// client.push_many_with(&mut *tx, "avengers", &docs).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn push_many_with<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        queue: &str,
        docs: &[NewDoc],
    ) -> Result<u64> {
        check_queue(queue)?;
        for (n, doc) in docs.iter().enumerate() {
            check_subject(&doc.subject)
                .and_then(|()| check_version(doc.version))
                .and_then(|()| check_key(doc.get_key()))
                .map_err(|e| at_position(e, n + 1))?;
        }
        let subjects: Vec<&str> = docs.iter().map(|d| d.subject.as_str()).collect();
        let versions: Vec<i32> = docs.iter().map(|d| d.version).collect();
        let priorities: Vec<i32> = docs.iter().map(|d| d.priority).collect();
        let (ats, delays): (Vec<_>, Vec<_>) = docs.iter().map(|d| d.schedule.binds()).unzip();
        let payloads: Vec<&Value> = docs.iter().map(|d| &d.payload).collect();
        let keys: Vec<Option<&str>> = docs.iter().map(NewDoc::get_key).collect();
        let statement = statement(per_queue!("push_many"), queue);
        let row = sqlx::query(&statement)
            .bind(queue)
            .bind(subjects)
            .bind(versions)
            .bind(priorities)
            .bind(ats)
            .bind(delays)
            .bind(payloads)
            .bind(keys)
            .fetch_one(self.caller(executor))
            .await
            .map_err(|e| queue_error(e, queue))?;
        Ok(u64::try_from(row.try_get::<i32, _>(0)?).unwrap_or(0))
    }

    /// Appends a document under a generated unique subject (a UUID), due now;
    /// returns the subject.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let subject = client.append("sendmail", &serde_json::json!({"to": "ada@example.com"}), 0, 0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn append(
        &self,
        queue: &str,
        payload: &Value,
        version: i32,
        priority: i32,
    ) -> Result<String> {
        self.append_keyed_with(self.exec(), queue, payload, version, priority, None)
            .await
    }

    /// [`append`](Self::append) through any executor.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let mut tx = client.pool().begin().await?;
    /// let subject = client.append_with(&mut *tx, "sendmail", &serde_json::json!({"to": "ada@example.com"}), 0, 0).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn append_with<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        queue: &str,
        payload: &Value,
        version: i32,
        priority: i32,
    ) -> Result<String> {
        self.append_keyed_with(executor, queue, payload, version, priority, None)
            .await
    }

    /// [`append`](Self::append) with a key for the queue's key concurrency
    /// (`None`: no key), as [`NewDoc::key`] gives one to a push.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty key, one over 255 characters or
    /// with a NUL byte; otherwise as [`push`](Self::push).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let page = serde_json::json!({"url": "https://example.com/a"});
    /// let subject = client.append_keyed("crawl", &page, 0, 0, Some("example.com")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn append_keyed(
        &self,
        queue: &str,
        payload: &Value,
        version: i32,
        priority: i32,
        key: Option<&str>,
    ) -> Result<String> {
        self.append_keyed_with(self.exec(), queue, payload, version, priority, key)
            .await
    }

    /// [`append_keyed`](Self::append_keyed) through any executor.
    ///
    /// # Errors
    ///
    /// As [`append_keyed`](Self::append_keyed).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let mut tx = client.pool().begin().await?;
    /// let page = serde_json::json!({"url": "https://example.com/a"});
    /// client.append_keyed_with(&mut *tx, "crawl", &page, 0, 0, Some("example.com")).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn append_keyed_with<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        queue: &str,
        payload: &Value,
        version: i32,
        priority: i32,
        key: Option<&str>,
    ) -> Result<String> {
        check_queue(queue)?;
        check_key(key)?;
        let row = sqlx::query(sql!("doc_append"))
            .bind(queue)
            .bind(payload)
            .bind(version)
            .bind(priority)
            .bind(key)
            .fetch_one(self.caller(executor))
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Pushes the document, or if the subject exists and is not active,
    /// updates its priority, payload and schedule (a planned or pending document
    /// follows the new time; completed and dead ones keep their status; the
    /// version never changes).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// use std::time::Duration;
    /// let doc = fetchq_core::NewDoc::new("john").priority(1).at(Duration::from_secs(60));
    /// client.upsert("avengers", &doc).await?;
    /// # Ok(()) }
    /// ```
    pub async fn upsert(&self, queue: &str, doc: &NewDoc) -> Result<Upserted> {
        self.upsert_with(self.exec(), queue, doc).await
    }

    /// [`upsert`](Self::upsert) through any executor.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let mut tx = client.pool().begin().await?;
    /// client.upsert_with(&mut *tx, "avengers", &fetchq_core::NewDoc::new("john")).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn upsert_with<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        queue: &str,
        doc: &NewDoc,
    ) -> Result<Upserted> {
        check_queue(queue)?;
        check_subject(&doc.subject)?;
        check_key(doc.get_key())?;
        let row = doc_query(sql!("doc_upsert"), queue, doc)
            .bind(doc.get_key())
            .fetch_one(self.caller(executor))
            .await?;
        let (queued, updated): (i32, i32) = (row.try_get(0)?, row.try_get(1)?);
        Ok(if queued > 0 {
            Upserted::Inserted
        } else if updated > 0 {
            Upserted::Updated
        } else {
            Upserted::Unchanged
        })
    }

    /// Reads one document, whatever its status, without changing it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the subject is not in the queue,
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let doc = client.get("avengers", "ironman").await?;
    /// println!("ironman is {:?}, next run at {}", doc.status, doc.next_iteration);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, queue: &str, subject: &str) -> Result<DocState> {
        check_queue(queue)?;
        let row = sqlx::query(sql!("doc_get"))
            .bind(queue)
            .bind(subject)
            .fetch_optional(self.exec())
            .await?
            .ok_or_else(|| Error::NotFound {
                queue: queue.to_owned(),
                subject: subject.to_owned(),
            })?;
        DocState::from_row(&row)
    }
}

impl DocState {
    /// A row of `subject, version, priority, status, attempts, iterations,
    /// next_iteration, created_at, last_iteration, payload, key` (doc_get,
    /// doc_list).
    pub(crate) fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self> {
        let code: i32 = row.try_get(3)?;
        Ok(DocState {
            subject: row.try_get(0)?,
            version: row.try_get(1)?,
            priority: row.try_get(2)?,
            status: Status::from_code(code).ok_or_else(|| Error::InvalidArgument {
                message: format!("unknown status code {code}"),
            })?,
            attempts: row.try_get(4)?,
            iterations: row.try_get(5)?,
            next_iteration: row.try_get(6)?,
            created_at: row.try_get(7)?,
            last_iteration: row.try_get(8)?,
            payload: row.try_get(9)?,
            key: row.try_get(10)?,
        })
    }
}
