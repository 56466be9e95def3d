//! Picking documents under a lease, and resolving them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgExecutor, Postgres, Row};
use uuid::Uuid;

use crate::doc::{Schedule, check_version};
use crate::error::{Error, Result};
use crate::per_queue::{per_queue, queue_error, statement};
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// What to pick: version, how many, for how long.
///
/// ```
/// use std::time::Duration;
/// let opts = fetchq_core::PickOptions::new().version(1).limit(50).lease(Duration::from_secs(30));
/// assert_eq!(opts.get_limit(), 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickOptions {
    version: i32,
    limit: i32,
    lease: Duration,
    owner: Option<i64>,
}

impl Default for PickOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PickOptions {
    /// Version 0, one document, a 5 minute lease (FetchQ's defaults).
    ///
    /// ```
    /// let opts = fetchq_core::PickOptions::new();
    /// assert_eq!(opts.get_limit(), 1);
    /// ```
    pub fn new() -> Self {
        Self {
            version: 0,
            limit: 1,
            lease: Duration::from_secs(300),
            owner: None,
        }
    }

    /// The document version to pick.
    ///
    /// ```
    /// let v2 = fetchq_core::PickOptions::new().version(2);
    /// # let _ = v2;
    /// ```
    pub fn version(mut self, version: i32) -> Self {
        self.version = version;
        self
    }

    /// How many documents at most.
    ///
    /// ```
    /// assert_eq!(fetchq_core::PickOptions::new().limit(100).get_limit(), 100);
    /// ```
    pub fn limit(mut self, limit: i32) -> Self {
        self.limit = limit;
        self
    }

    /// How long the lease lasts before the document becomes an orphan.
    ///
    /// ```
    /// let opts = fetchq_core::PickOptions::new().lease(std::time::Duration::from_secs(30));
    /// # let _ = opts;
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The registered worker the leases belong to (schema 21, see
    /// [`Client::worker_register`]): the lease tokens then carry it, and
    /// maintenance releases these leases at once when the registration
    /// lapses, instead of when each lease runs out. Without an owner (the
    /// default) a token is random.
    ///
    /// ```
    /// let opts = fetchq_core::PickOptions::new().owner(Some(42));
    /// assert_eq!(opts.get_owner(), Some(42));
    /// ```
    pub fn owner(mut self, owner: Option<i64>) -> Self {
        self.owner = owner;
        self
    }

    /// The configured lease owner.
    ///
    /// ```
    /// assert_eq!(fetchq_core::PickOptions::new().get_owner(), None);
    /// ```
    pub fn get_owner(&self) -> Option<i64> {
        self.owner
    }

    /// The engine's rules for a pick, checked before anything is sent:
    /// version 0 or more, limit at least 1, a lease longer than zero.
    fn check(&self) -> Result<()> {
        check_version(self.version)?;
        let problem = if self.limit < 1 {
            format!("limit must be at least 1, got {}", self.limit)
        } else if self.lease.is_zero() {
            "lease duration must be positive, got 0".to_owned()
        } else {
            return Ok(());
        };
        Err(Error::InvalidArgument { message: problem })
    }

    /// The configured limit.
    ///
    /// ```
    /// assert_eq!(fetchq_core::PickOptions::default().get_limit(), 1);
    /// ```
    pub fn get_limit(&self) -> i32 {
        self.limit
    }
}

/// The exclusive hold a worker has on a picked document. Every resolution
/// takes it; once the lease is lost (expired and re-picked, or already
/// resolved) they fail with [`Error::LeaseLost`] and change nothing.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
/// let lease = &doc.lease;
/// println!("{} held until {}", lease.subject, lease.expires_at);
/// client.complete(lease, None).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The queue.
    pub queue: String,
    /// The document's subject.
    pub subject: String,
    /// The fencing token of this pick.
    pub token: Uuid,
    /// When the lease runs out unless extended.
    pub expires_at: DateTime<Utc>,
}

/// A picked (active) document.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// for doc in client.pick("avengers", &fetchq_core::PickOptions::new().limit(10)).await? {
///     println!("{} attempt {}", doc.subject, doc.attempts);
///     client.complete(&doc.lease, None).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Unique subject.
    pub subject: String,
    /// Payload.
    pub payload: Value,
    /// Version.
    pub version: i32,
    /// Priority.
    pub priority: i32,
    /// Consecutive picks without success, this one included (1 on a first try).
    pub attempts: i32,
    /// Successful resolutions so far.
    pub iterations: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last resolution.
    pub last_iteration: Option<DateTime<Utc>>,
    /// The lease to resolve it with.
    pub lease: Lease,
}

impl Document {
    /// The payload as a typed value.
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] when it does not deserialize into `T`.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct Profile { handle: String }
    /// let profile: Profile = doc.payload_as()?;
    /// # Ok(()) }
    /// ```
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(self.payload.clone())?)
    }

    /// A document from a row of `sql/per_queue/pick.sql` (column 0 is the
    /// promotion count, column 11 the next-due wait; 12 and 13 are read by `pick_rounds`; NULL document columns
    /// mean nothing was leased).
    fn from_row(queue: &str, row: &PgRow) -> Result<Option<Self>> {
        let Some(subject): Option<String> = row.try_get(1)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            lease: Lease {
                queue: queue.to_owned(),
                subject: subject.clone(),
                token: row.try_get(10)?,
                expires_at: row.try_get(9)?,
            },
            subject,
            payload: row.try_get(2)?,
            version: row.try_get(3)?,
            priority: row.try_get(4)?,
            attempts: row.try_get(5)?,
            iterations: row.try_get(6)?,
            created_at: row.try_get(7)?,
            last_iteration: row.try_get(8)?,
        }))
    }
}

/// What [`Client::pick_answer`] leased, and when to look again.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let answer = client.pick_answer("crawl", &fetchq_core::PickOptions::new()).await?;
/// println!("{} leased, next slot in {:?}", answer.docs.len(), answer.rate_wait);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PickAnswer {
    /// The leased documents.
    pub docs: Vec<Document>,
    /// When none was leased: the wait until the next planned document of the
    /// version is due (zero when already due), `None` when none is planned,
    /// the queue is paused, or the rate limit held documents back.
    pub next_due: Option<std::time::Duration>,
    /// When the queue's rate limit held due documents back: the wait until
    /// its next slot opens (zero when a slot is about to be freed by a pick in
    /// progress elsewhere). `None` on a queue without a limit, or when every
    /// due document the pick wanted was leased.
    pub rate_wait: Option<std::time::Duration>,
}

/// Runs a resolution statement (first column: affected rows) and turns 0 into
/// [`Error::LeaseLost`].
async fn resolve<'e, E: PgExecutor<'e>>(
    executor: E,
    query: Query<'_, Postgres, PgArguments>,
    lease: &Lease,
) -> Result<()> {
    let affected: i32 = query.fetch_one(executor).await?.try_get(0)?;
    if affected > 0 {
        Ok(())
    } else {
        Err(Error::LeaseLost {
            queue: lease.queue.clone(),
            subject: lease.subject.clone(),
        })
    }
}

impl Client {
    /// Leases up to `limit` due documents of one version, by priority (high
    /// first), then planned time, then attempts. No two callers ever get the
    /// same document. A paused queue returns nothing.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`], [`Error::InvalidArgument`] (negative version,
    /// limit below 1, zero lease), database errors.
    ///
    /// ```no_run
    /// # use fetchq_core::PickOptions;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// for doc in client.pick("avengers", &PickOptions::new().limit(10)).await? {
    ///     client.complete(&doc.lease, None).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pick(&self, queue: &str, options: &PickOptions) -> Result<Vec<Document>> {
        Ok(self.pick_rounds(queue, options, false).await?.docs)
    }

    /// [`pick`](Self::pick) for a worker that sleeps when nothing is due: when
    /// no document was leased, the same statement also tells how long until
    /// the next planned document of `options`' version is due (measured on
    /// the database's clock, zero when already due), so an idle poll costs one
    /// round trip instead of a pick and a
    /// [`queue_next_due_for`](Self::queue_next_due_for). On a rate-limited
    /// queue whose due documents wait for a slot, it is the wait until the
    /// next slot opens instead.
    ///
    /// The duration is `None` when documents were leased, when no document of
    /// that version is planned, or when the queue is paused (a push or
    /// `queue_resume` sends a notification on `fetchq_pending`). As with
    /// [`queue_next_due_for`](Self::queue_next_due_for), planned documents
    /// already due for more than 100 ms are not counted: another transaction
    /// holds their row, and waiting for it must not become a busy loop.
    ///
    /// # Errors
    ///
    /// As [`pick`](Self::pick).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use fetchq_core::PickOptions;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let poll = Duration::from_secs(1);
    /// let (docs, next_due) = client.pick_idle("avengers", &PickOptions::new().limit(10)).await?;
    /// if docs.is_empty() {
    ///     // sleep until the next planned document, at most `poll`
    ///     tokio::time::sleep(next_due.map_or(poll, |d| d.min(poll))).await;
    /// }
    /// for doc in docs {
    ///     client.complete(&doc.lease, None).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pick_idle(
        &self,
        queue: &str,
        options: &PickOptions,
    ) -> Result<(Vec<Document>, Option<Duration>)> {
        let answer = self.pick_rounds(queue, options, true).await?;
        let wait = if answer.docs.is_empty() {
            answer.rate_wait.or(answer.next_due)
        } else {
            None
        };
        Ok((answer.docs, wait))
    }

    /// [`pick_idle`](Self::pick_idle) with the whole answer: the documents,
    /// the wait until the next planned document when none was leased, and,
    /// when the queue's rate limit left due documents behind (some leased or
    /// none), the wait until its next slot opens. A worker that got
    /// [`rate_wait`](PickAnswer::rate_wait) should not pick the queue again
    /// before it has passed: that pick would lease nothing.
    ///
    /// # Errors
    ///
    /// As [`pick`](Self::pick).
    ///
    /// ```no_run
    /// # use fetchq_core::PickOptions;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let answer = client.pick_answer("crawl", &PickOptions::new().limit(10)).await?;
    /// for doc in &answer.docs {
    ///     client.complete(&doc.lease, None).await?;
    /// }
    /// if let Some(wait) = answer.rate_wait {
    ///     tokio::time::sleep(wait).await; // the next slot of the rate limit
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pick_answer(&self, queue: &str, options: &PickOptions) -> Result<PickAnswer> {
        self.pick_rounds(queue, options, true).await
    }

    /// The statement of `sql/per_queue/pick.sql`, run once, or twice when the
    /// first promoted due planned documents and came back short (not when the
    /// rate limit cut it short). With `next_due`, an empty last round also
    /// returns the wait until the next planned document. A queue with a rate
    /// limit or a key concurrency is handed over by that statement to
    /// `pick_limited.sql`, which hands a keyed queue on to `fetchq.doc_pick`.
    async fn pick_rounds(
        &self,
        queue: &str,
        options: &PickOptions,
        next_due: bool,
    ) -> Result<PickAnswer> {
        validate_queue_name(queue)?;
        options.check()?;
        let mut docs = Vec::new();
        let mut due_in = None;
        let mut rate_wait = None;
        let mut special = false;
        // A second round only when this one promoted due planned documents
        // (visible from the next statement on) and came back short.
        for _ in 0..2 {
            let want = options.limit - i32::try_from(docs.len()).unwrap_or(i32::MAX);
            let mut rows = self
                .pick_statement(queue, options, next_due, want, special)
                .await?;
            if !special && rows.first().map(|r| r.try_get(12)).transpose()? == Some(true) {
                special = true;
                let keyed = rows.first().map(|r| r.try_get(13)).transpose()? == Some(true);
                if keyed {
                    // key concurrency: fetchq.doc_pick keeps the per-key caps
                    docs.extend(self.pick_keyed(queue, options, want).await?);
                    due_in = None;
                    break;
                }
                // a rate limit: the limited statement
                rows = self
                    .pick_statement(queue, options, next_due, want, true)
                    .await?;
            }
            let (promoted, secs): (i64, Option<f64>) = match rows.first() {
                Some(row) => (row.try_get(0)?, row.try_get(11)?),
                None => (0, None),
            };
            let (rate_secs, keyed): (Option<f64>, bool) = match rows.first() {
                Some(row) if special => (row.try_get(12)?, row.try_get(13)?),
                _ => (None, false),
            };
            if keyed {
                // key concurrency: fetchq.doc_pick keeps the per-key caps
                docs.extend(self.pick_keyed(queue, options, want).await?);
                due_in = None;
                rate_wait = None;
                break;
            }
            due_in = crate::batch::due_in(secs);
            rate_wait = crate::batch::due_in(rate_secs);
            let before = docs.len();
            for row in &rows {
                docs.extend(Document::from_row(queue, row)?);
            }
            if promoted == 0
                || rate_wait.is_some()
                || docs.len() - before >= usize::try_from(want).unwrap_or(0)
            {
                break;
            }
        }
        docs.sort_by_key(|d| std::cmp::Reverse(d.priority));
        if !docs.is_empty() {
            due_in = None;
        }
        Ok(PickAnswer {
            docs,
            next_due: due_in,
            rate_wait,
        })
    }

    /// Runs `pick.sql`, or `pick_limited.sql` when `limited`, for `want`
    /// documents (one prepared text per limit, see the statement).
    async fn pick_statement(
        &self,
        queue: &str,
        options: &PickOptions,
        next_due: bool,
        want: i32,
        limited: bool,
    ) -> Result<Vec<PgRow>> {
        let template = if limited {
            per_queue!("pick_limited")
        } else {
            per_queue!("pick")
        };
        let statement = statement(template, queue).replace("{limit}", &want.to_string());
        sqlx::query(&statement)
            .bind(queue)
            .bind(options.version)
            .bind(options.lease)
            .bind(next_due)
            .bind(options.owner)
            .fetch_all(self.exec())
            .await
            .map_err(|e| queue_error(e, queue))
    }

    /// A pick through `fetchq.doc_pick` (a queue with key concurrency).
    async fn pick_keyed(
        &self,
        queue: &str,
        options: &PickOptions,
        want: i32,
    ) -> Result<Vec<Document>> {
        let query = match options.owner {
            // the five-argument form exists from schema 21 on; without an
            // owner the four-argument form runs on any schema
            Some(owner) => sqlx::query(sql!("doc_pick_owned"))
                .bind(queue)
                .bind(options.version)
                .bind(want)
                .bind(options.lease)
                .bind(owner),
            None => sqlx::query(sql!("doc_pick"))
                .bind(queue)
                .bind(options.version)
                .bind(want)
                .bind(options.lease),
        };
        let rows = query.fetch_all(self.exec()).await?;
        let mut docs = Vec::with_capacity(rows.len());
        for row in &rows {
            docs.extend(Document::from_row(queue, row)?);
        }
        Ok(docs)
    }

    /// Plans the document's next run (the repetitive-task ending): pending if
    /// due, planned otherwise, optionally with a new payload.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`], [`Error::PayloadTooLarge`], database errors.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use fetchq_core::Schedule;
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// client.reschedule(&doc.lease, Schedule::after(Duration::from_secs(2 * 86_400)), None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reschedule(
        &self,
        lease: &Lease,
        when: Schedule,
        payload: Option<&Value>,
    ) -> Result<()> {
        self.reschedule_with(self.exec(), lease, when, payload)
            .await
    }

    /// [`reschedule`](Self::reschedule) through any executor.
    ///
    /// # Errors
    ///
    /// As [`reschedule`](Self::reschedule).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// let mut tx = client.pool().begin().await?;
    /// client.reschedule_with(&mut *tx, &doc.lease, fetchq_core::Schedule::now(), None).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn reschedule_with<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        lease: &Lease,
        when: Schedule,
        payload: Option<&Value>,
    ) -> Result<()> {
        let (at, delay) = when.binds();
        let query = sqlx::query(sql!("doc_reschedule"))
            .bind(&lease.queue)
            .bind(&lease.subject)
            .bind(at)
            .bind(delay)
            .bind(payload)
            .bind(lease.token);
        resolve(self.caller(executor), query, lease).await
    }

    /// Moves the document to another version (what a migration handler
    /// returns), optionally with an upgraded payload, due `when`.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`], [`Error::InvalidArgument`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// let upgraded = serde_json::json!({"first_name": doc.payload["name"]});
    /// client.migrate_version(&doc.lease, 1, Some(&upgraded), fetchq_core::Schedule::now()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn migrate_version(
        &self,
        lease: &Lease,
        to_version: i32,
        payload: Option<&Value>,
        when: Schedule,
    ) -> Result<()> {
        // refused here, before anything is sent: a permanent error, not a retry
        check_version(to_version)?;
        let (at, delay) = when.binds();
        let query = sqlx::query(sql!("doc_migrate"))
            .bind(&lease.queue)
            .bind(&lease.subject)
            .bind(to_version)
            .bind(payload)
            .bind(at)
            .bind(delay)
            .bind(lease.token);
        resolve(self.exec(), query, lease).await
    }

    /// Records a failed attempt: logs `message` (with optional details and a
    /// reference such as a process id) and retries after the queue's backoff,
    /// or marks the document dead once it reached `max_attempts`.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// client.reject(&doc.lease, "HTTP 503", Some(&serde_json::json!({"status": 503})), Some("worker-7")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reject(
        &self,
        lease: &Lease,
        message: &str,
        details: Option<&Value>,
        ref_id: Option<&str>,
    ) -> Result<()> {
        let query = sqlx::query(sql!("doc_reject"))
            .bind(&lease.queue)
            .bind(&lease.subject)
            .bind(message)
            .bind(details)
            .bind(ref_id)
            .bind(lease.token);
        resolve(self.exec(), query, lease).await
    }

    /// Marks the document completed, optionally storing a final payload.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`], [`Error::PayloadTooLarge`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// client.complete(&doc.lease, Some(&serde_json::json!({"done": true}))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete(&self, lease: &Lease, payload: Option<&Value>) -> Result<()> {
        self.complete_with(self.exec(), lease, payload).await
    }

    /// [`complete`](Self::complete) through any executor, e.g. in the same
    /// transaction as the work's own writes.
    ///
    /// # Errors
    ///
    /// As [`complete`](Self::complete).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// let mut tx = client.pool().begin().await?;
    /// // ... write the work's results with &mut *tx ...
    /// client.complete_with(&mut *tx, &doc.lease, None).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete_with<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        lease: &Lease,
        payload: Option<&Value>,
    ) -> Result<()> {
        let query = sqlx::query(sql!("doc_complete"))
            .bind(&lease.queue)
            .bind(&lease.subject)
            .bind(payload)
            .bind(lease.token);
        resolve(self.caller(executor), query, lease).await
    }

    /// Marks the document dead: never processed again, its subject never
    /// re-admitted until dropped.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// client.kill(&doc.lease, Some(&serde_json::json!({"reason": "404"}))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn kill(&self, lease: &Lease, payload: Option<&Value>) -> Result<()> {
        let query = sqlx::query(sql!("doc_kill"))
            .bind(&lease.queue)
            .bind(&lease.subject)
            .bind(payload)
            .bind(lease.token);
        resolve(self.exec(), query, lease).await
    }

    /// Deletes the document; its subject may then be pushed again.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// client.drop_doc(&doc.lease).await?;
    /// # Ok(()) }
    /// ```
    pub async fn drop_doc(&self, lease: &Lease) -> Result<()> {
        let query = sqlx::query(sql!("doc_drop"))
            .bind(&lease.queue)
            .bind(&lease.subject)
            .bind(lease.token);
        resolve(self.exec(), query, lease).await
    }

    /// Heartbeat: moves the lease expiry to `duration` from now.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] once the lease is no longer held, database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// client.extend_lease(&doc.lease, std::time::Duration::from_secs(300)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend_lease(&self, lease: &Lease, duration: Duration) -> Result<()> {
        let query = sqlx::query(sql!("doc_extend_lease"))
            .bind(&lease.queue)
            .bind(&lease.subject)
            .bind(duration)
            .bind(lease.token);
        resolve(self.exec(), query, lease).await
    }
}
