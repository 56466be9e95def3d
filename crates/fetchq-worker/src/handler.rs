//! What a handler is: its options, the document it receives, its context and
//! the outcome it returns.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fetchq_core::{Client, Lease, MetricBatch, Schedule};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Where and how a handler works: its queue and version, and how hard.
///
/// ```
/// use std::time::Duration;
/// use fetchq_worker::HandlerOptions;
///
/// let opts = HandlerOptions::new("avengers")
///     .version(1)
///     .concurrency(8)
///     .batch(8)
///     .lease(Duration::from_secs(300))
///     .max_runtime(Some(Duration::from_secs(600)));
/// assert_eq!(opts.name(), "avengers@v1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerOptions {
    pub(crate) name: Option<String>,
    pub(crate) queue: String,
    pub(crate) version: i32,
    pub(crate) concurrency: usize,
    /// `None`: as many as `concurrency`.
    pub(crate) batch: Option<usize>,
    pub(crate) lease: Duration,
    pub(crate) idle_poll: Duration,
    pub(crate) max_runtime: Option<Duration>,
    pub(crate) migrate_to: Option<i32>,
    pub(crate) cron: Option<HandlerCron>,
}

/// The calendar of a handler that runs on a cron schedule
/// ([`HandlerOptions::cron`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandlerCron {
    pub(crate) cron: String,
    pub(crate) time_zone: String,
    pub(crate) subject: Option<String>,
}

/// The largest [`HandlerOptions::batch`]: what one pick may lease and one
/// pool may buffer.
pub const MAX_BATCH: usize = 10_000;

impl HandlerOptions {
    /// Options for a handler of `queue`: version 0, 10 documents in flight,
    /// picked as many at a time as run at once (`batch` follows
    /// `concurrency` unless set), a 5 minute lease (extended by heartbeats), a 1 s idle
    /// poll, 30 minutes of run time at most.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            name: None,
            queue: queue.into(),
            version: 0,
            concurrency: 10,
            batch: None,
            lease: Duration::from_secs(300),
            idle_poll: Duration::from_secs(1),
            max_runtime: Some(Duration::from_secs(1800)),
            migrate_to: None,
            cron: None,
        }
    }

    /// A name for logs and [`Stats`](crate::Stats) (default `<queue>@v<version>`).
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}@v{}", self.queue, self.version))
    }

    /// Sets the name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The document version this handler picks.
    pub fn version(mut self, version: i32) -> Self {
        self.version = version;
        self
    }

    /// How many documents this handler processes at once in this process.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How many documents one pick asks for at most (default: the
    /// concurrency; at most [`MAX_BATCH`]). Above the concurrency, the
    /// surplus waits in the pool's local buffer (leased and heartbeated like
    /// running documents) and is fed to slots as they free up, so fast
    /// handlers pay one pick round trip per `batch` documents. Buffered
    /// documents are given back at once on shutdown, and when one has waited
    /// for a slot longer than half its lease (10 s at most): the buffer never
    /// holds more than `batch - concurrency` documents, nor for long, away
    /// from other processes. Below the concurrency, a pool with more free
    /// slots than `batch` runs several picks of `batch` at once (at most 8),
    /// as that many single-fetch workers would.
    ///
    /// ```
    /// let opts = fetchq_worker::HandlerOptions::new("mailer").concurrency(8).batch(100);
    /// assert_eq!(opts.get_batch(), 100);
    /// assert_eq!(fetchq_worker::HandlerOptions::new("q").concurrency(32).get_batch(), 32);
    /// ```
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = Some(batch);
        self
    }

    /// How many documents one pick asks for at most.
    pub fn get_batch(&self) -> usize {
        self.batch.unwrap_or(self.concurrency)
    }

    /// How many documents this handler processes at once in this process.
    pub fn get_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The lease of a picked document; heartbeats extend it while the handler runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long an idle pool waits before polling again (notifications and
    /// planned times wake it earlier).
    pub fn idle_poll(mut self, idle_poll: Duration) -> Self {
        self.idle_poll = idle_poll;
        self
    }

    /// The longest one document may run; past it the handler is cancelled and
    /// the document rejected. `None`: no limit.
    pub fn max_runtime(mut self, max_runtime: Option<Duration>) -> Self {
        self.max_runtime = max_runtime;
        self
    }

    /// Marks a migration handler: [`Outcome::upgrade`] moves documents to this version.
    pub fn migrate_to(mut self, version: i32) -> Self {
        self.migrate_to = Some(version);
        self
    }

    /// Runs this handler on a calendar: the runtime sets a schedule (see
    /// [`Runtime::schedule`](crate::Runtime::schedule)) that pushes, or makes
    /// due again, one document of this handler's queue and version at each
    /// tick of `cron` (5 fields, 6 with seconds first, or `@daily`-style),
    /// read in UTC unless [`tz`](Self::tz) says otherwise.
    ///
    /// The document's subject is [`cron_subject`](Self::cron_subject), by
    /// default the handler's [`name`](Self::name); the schedule is named
    /// after the queue and the subject (`<queue>.<subject>`, characters other
    /// than `A-Z a-z 0-9 _ . : -` replaced by `_`). A tick that finds the
    /// document still running is skipped, so runs never overlap. The schedule
    /// stays in the database when the handler is removed from the code: drop
    /// it with `fetchq schedule drop`.
    ///
    /// ```
    /// let opts = fetchq_worker::HandlerOptions::new("reports")
    ///     .cron("0 3 * * *")
    ///     .tz("Europe/Stockholm")
    ///     .cron_subject("nightly");
    /// assert!(opts.validate().is_ok());
    /// assert!(fetchq_worker::HandlerOptions::new("q").cron("0 25 * * *").validate().is_err());
    /// ```
    pub fn cron(mut self, cron: impl Into<String>) -> Self {
        let cron = cron.into();
        match &mut self.cron {
            Some(c) => c.cron = cron,
            None => {
                self.cron = Some(HandlerCron {
                    cron,
                    time_zone: "UTC".into(),
                    subject: None,
                })
            }
        }
        self
    }

    /// The IANA time zone the [`cron`](Self::cron) expression is read in
    /// (default UTC). Set it after `cron`; alone it makes
    /// [`validate`](Self::validate) fail.
    ///
    /// ```
    /// let opts = fetchq_worker::HandlerOptions::new("q").cron("@daily").tz("Asia/Tokyo");
    /// assert!(opts.validate().is_ok());
    /// assert!(fetchq_worker::HandlerOptions::new("q").tz("Asia/Tokyo").validate().is_err());
    /// ```
    pub fn tz(mut self, time_zone: impl Into<String>) -> Self {
        let time_zone = time_zone.into();
        match &mut self.cron {
            Some(c) => c.time_zone = time_zone,
            None => {
                self.cron = Some(HandlerCron {
                    cron: String::new(),
                    time_zone,
                    subject: None,
                })
            }
        }
        self
    }

    /// The subject of the document the [`cron`](Self::cron) schedule fires
    /// (default: the handler's name).
    ///
    /// ```
    /// let opts = fetchq_worker::HandlerOptions::new("q").cron("@hourly").cron_subject("sweep");
    /// assert_eq!(opts.cron_schedule().unwrap().unwrap().subject, "sweep");
    /// ```
    pub fn cron_subject(mut self, subject: impl Into<String>) -> Self {
        let subject = Some(subject.into());
        match &mut self.cron {
            Some(c) => c.subject = subject,
            None => {
                self.cron = Some(HandlerCron {
                    cron: String::new(),
                    time_zone: "UTC".into(),
                    subject,
                })
            }
        }
        self
    }

    /// The schedule the runtime sets for a [`cron`](Self::cron) handler, or
    /// `None` for a handler without one.
    ///
    /// # Errors
    ///
    /// A message when the expression, the time zone or the subject is invalid.
    ///
    /// ```
    /// let opts = fetchq_worker::HandlerOptions::new("reports").version(2).cron("0 3 * * *");
    /// let s = opts.cron_schedule().unwrap().unwrap();
    /// assert_eq!((s.name.as_str(), s.subject.as_str(), s.version), ("reports.reports_v2", "reports@v2", 2));
    /// assert!(fetchq_worker::HandlerOptions::new("q").cron_schedule().unwrap().is_none());
    /// ```
    pub fn cron_schedule(&self) -> Result<Option<fetchq_core::CronSchedule>, String> {
        let Some(c) = &self.cron else {
            return Ok(None);
        };
        let name = self.name();
        if c.cron.is_empty() {
            return Err(format!(
                "{name}: tz or cron_subject is set without cron; set the expression with cron"
            ));
        }
        let subject = c.subject.clone().unwrap_or_else(|| name.clone());
        let schedule_name: String = format!("{}.{}", self.queue, subject)
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | ':' | '-') {
                    ch
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        let schedule = fetchq_core::CronSchedule::new(schedule_name, c.cron.clone())
            .time_zone(c.time_zone.clone())
            .queue(self.queue.clone())
            .subject(subject)
            .version(self.version);
        schedule
            .validate()
            .map_err(|e| format!("{name}: cron schedule: {e}"))?;
        Ok(Some(schedule))
    }

    /// Checks the options; the runtime refuses to start with invalid ones.
    ///
    /// # Errors
    ///
    /// A message saying which option is wrong.
    pub fn validate(&self) -> Result<(), String> {
        fetchq_core::validate_queue_name(&self.queue).map_err(|e| e.to_string())?;
        let name = self.name();
        if self.version < 0 {
            return Err(format!("{name}: version must be 0 or more"));
        }
        if self.concurrency == 0 || self.get_batch() == 0 {
            return Err(format!("{name}: concurrency and batch must be at least 1"));
        }
        if self.get_batch() > MAX_BATCH {
            return Err(format!(
                "{name}: batch must be at most {MAX_BATCH}, got {}",
                self.get_batch()
            ));
        }
        if self.lease < Duration::from_millis(100) {
            return Err(format!("{name}: the lease must be at least 100 ms"));
        }
        if self.idle_poll.is_zero() {
            return Err(format!("{name}: idle_poll must be positive"));
        }
        if self.max_runtime.is_some_and(|d| d.is_zero()) {
            return Err(format!("{name}: max_runtime must be positive"));
        }
        if let Some(to) = self.migrate_to
            && to == self.version
        {
            return Err(format!(
                "{name}: migrate_to must differ from the handler's version"
            ));
        }
        self.cron_schedule()?;
        Ok(())
    }
}

/// A picked document with a typed payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc<T> {
    /// The queue.
    pub queue: String,
    /// Unique subject.
    pub subject: String,
    /// The payload, deserialized.
    pub payload: T,
    /// Version.
    pub version: i32,
    /// Priority.
    pub priority: i32,
    /// Attempts, this one included (1 on a first try).
    pub attempts: i32,
    /// Successful resolutions so far (how many times a repetitive task ran).
    pub iterations: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last resolution.
    pub last_iteration: Option<DateTime<Utc>>,
}

/// What a handler gets besides the document: the client (to push follow-up
/// documents), its lease, and a cancellation token that fires when the lease is
/// lost, the max run time passes, or shutdown gives up waiting.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) client: Client,
    pub(crate) lease: Lease,
    pub(crate) cancel: CancellationToken,
    pub(crate) span: tracing::Span,
    /// Custom counters and timers recorded by the handler, written with its outcome.
    pub(crate) metrics: Arc<Mutex<MetricBatch>>,
}

/// The most custom metric entries one document's handler may record (an
/// error past it: a runaway loop must not eat the worker's memory).
pub const MAX_METRICS_PER_DOC: usize = 10_000;

impl Context {
    /// A context for calling a handler directly (in tests, say); the runtime
    /// builds its own.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) {
    /// let ctx = fetchq_worker::Context::new(client, doc.lease.clone());
    /// assert!(!ctx.is_cancelled());
    /// # }
    /// ```
    pub fn new(client: Client, lease: Lease) -> Self {
        Self {
            client,
            lease,
            cancel: CancellationToken::new(),
            span: tracing::Span::none(),
            metrics: Arc::default(),
        }
    }

    /// The fetchq client, e.g. to push discovered documents.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The lease held on this document.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Fires when the work should stop: its result will be discarded.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the work should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The document's tracing span (queue, subject, version, attempt): the
    /// handler already runs inside it; use it for work spawned elsewhere.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    fn record(
        &self,
        add: impl FnOnce(&mut MetricBatch) -> fetchq_core::Result<()>,
    ) -> fetchq_core::Result<()> {
        let mut batch = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        if batch.len() >= MAX_METRICS_PER_DOC {
            return Err(fetchq_core::Error::InvalidArgument {
                message: format!(
                    "a handler records at most {MAX_METRICS_PER_DOC} metrics per document"
                ),
            });
        }
        add(&mut batch)
    }

    /// Adds `increment` to the custom counter `name` of this document's queue.
    /// Nothing is sent now: it is written with the handler's outcome, in the
    /// same batch as the other documents' (no round trip per call), and
    /// dropped if the outcome is (the lease was lost, shutdown released the
    /// document). Read it with `Client::metric_get`, `GET /metrics`
    /// (`fetchq_custom`) or SQL `fetchq.metric_get`.
    ///
    /// # Errors
    ///
    /// [`InvalidArgument`](fetchq_core::Error::InvalidArgument) for a bad name
    /// (1 to 100 characters, no NUL, not starting with `~t/`) or past
    /// [`MAX_METRICS_PER_DOC`] entries; nothing is recorded then.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// let ctx = fetchq_worker::Context::new(client, doc.lease.clone());
    /// ctx.metric_increment("profiles_404", 1)?;
    /// # Ok(()) }
    /// ```
    pub fn metric_increment(&self, name: &str, increment: i64) -> fetchq_core::Result<()> {
        self.record(|b| b.increment(&self.lease.queue, name, increment))
    }

    /// Records that the timer `name` of this document's queue took `elapsed`
    /// (written as [`metric_increment`](Self::metric_increment) is).
    ///
    /// # Errors
    ///
    /// [`InvalidArgument`](fetchq_core::Error::InvalidArgument) for a bad
    /// timer name (see [`fetchq_core::validate_timer_name`]), a time past
    /// 10^9 ms or past [`MAX_METRICS_PER_DOC`] entries; nothing is recorded then.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) -> fetchq_core::Result<()> {
    /// let ctx = fetchq_worker::Context::new(client, doc.lease.clone());
    /// ctx.metric_time("fetch_profile", std::time::Duration::from_millis(42))?;
    /// # Ok(()) }
    /// ```
    pub fn metric_time(&self, name: &str, elapsed: Duration) -> fetchq_core::Result<()> {
        self.record(|b| b.time(&self.lease.queue, name, elapsed))
    }

    /// Runs `fut` and records how long it took under the timer `name` of this
    /// document's queue (see [`metric_time`](Self::metric_time)); returns its
    /// output. A bad timer name does not change the result: the time is not
    /// recorded and a warning is logged (check names with
    /// [`fetchq_core::validate_timer_name`] or use `metric_time` for the error).
    ///
    /// ```no_run
    /// # async fn fetch(url: &str) -> String { String::new() }
    /// # async fn run(client: fetchq_core::Client, doc: fetchq_core::Document) {
    /// let ctx = fetchq_worker::Context::new(client, doc.lease.clone());
    /// let body = ctx.time("fetch_profile", fetch("https://example.com")).await;
    /// # let _ = body;
    /// # }
    /// ```
    pub async fn time<F: Future>(&self, name: &str, fut: F) -> F::Output {
        let started = Instant::now();
        let out = fut.await;
        if let Err(e) = self.metric_time(name, started.elapsed()) {
            tracing::warn!(timer = %name.chars().take(80).collect::<String>(), error = %e,
                "time not recorded");
        }
        out
    }

    /// What this context recorded so far and has not handed over for writing
    /// (for tests calling a handler directly).
    pub fn recorded_metrics(&self) -> MetricBatch {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes what was recorded, leaving nothing.
    pub(crate) fn take_metrics(&self) -> MetricBatch {
        std::mem::take(&mut *self.metrics.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How a handler finishes a document.
///
/// ```
/// use std::time::Duration;
/// use fetchq_worker::Outcome;
///
/// let again = Outcome::reschedule_in(Duration::from_secs(2 * 86_400)); // every second day
/// let done = Outcome::complete();
/// let failed = Outcome::reject("HTTP 503");
/// # let _ = (again, done, failed);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Run it again `at`, optionally with a new payload.
    Reschedule {
        /// When.
        at: Schedule,
        /// New payload (`None`: keep).
        payload: Option<Value>,
    },
    /// Done for good.
    Complete {
        /// Final payload (`None`: keep).
        payload: Option<Value>,
    },
    /// Failed: logged, retried after the queue's backoff, dead after max attempts.
    Reject {
        /// The error message.
        message: String,
        /// Structured details.
        details: Option<Value>,
        /// A reference (process id, request id...).
        ref_id: Option<String>,
    },
    /// Dead: never again, the subject stays taken.
    Kill {
        /// Final payload (`None`: keep).
        payload: Option<Value>,
    },
    /// Deleted: the subject may be pushed again.
    Drop,
    /// Moved to another version (a migration handler's result).
    Migrate {
        /// Target version; `None`: the handler's `migrate_to`, else its version + 1.
        to_version: Option<i32>,
        /// Upgraded payload (`None`: keep).
        payload: Option<Value>,
        /// When it is due in the new version.
        at: Schedule,
    },
}

impl Outcome {
    /// Run again at `when` (a time, or a delay from now).
    pub fn reschedule(when: impl Into<Schedule>) -> Self {
        Outcome::Reschedule {
            at: when.into(),
            payload: None,
        }
    }

    /// Run again `delay` from now.
    pub fn reschedule_in(delay: Duration) -> Self {
        Self::reschedule(Schedule::after(delay))
    }

    /// Run again at `time`.
    pub fn reschedule_at(time: DateTime<Utc>) -> Self {
        Self::reschedule(Schedule::at(time))
    }

    /// Completed.
    pub fn complete() -> Self {
        Outcome::Complete { payload: None }
    }

    /// Rejected with a message.
    pub fn reject(message: impl Into<String>) -> Self {
        Outcome::Reject {
            message: message.into(),
            details: None,
            ref_id: None,
        }
    }

    /// Killed.
    pub fn kill() -> Self {
        Outcome::Kill { payload: None }
    }

    /// Dropped.
    pub fn drop_doc() -> Self {
        Outcome::Drop
    }

    /// Moved to the handler's `migrate_to` version (or version + 1), due now.
    pub fn upgrade() -> Self {
        Outcome::Migrate {
            to_version: None,
            payload: None,
            at: Schedule::Now,
        }
    }

    /// Moved to `version`, due now.
    pub fn migrate(version: i32) -> Self {
        Outcome::Migrate {
            to_version: Some(version),
            payload: None,
            at: Schedule::Now,
        }
    }

    /// Sets the payload stored with this outcome (ignored by reject and drop).
    ///
    /// ```
    /// let o = fetchq_worker::Outcome::complete().with_payload(serde_json::json!({"ok": true}));
    /// # let _ = o;
    /// ```
    pub fn with_payload(mut self, value: Value) -> Self {
        match &mut self {
            Outcome::Reschedule { payload, .. }
            | Outcome::Complete { payload }
            | Outcome::Kill { payload }
            | Outcome::Migrate { payload, .. } => *payload = Some(value),
            Outcome::Reject { .. } | Outcome::Drop => {}
        }
        self
    }

    /// Sets the payload from any serializable value.
    ///
    /// # Errors
    ///
    /// When serialization fails.
    pub fn with_payload_from<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, HandlerError> {
        Ok(self.with_payload(serde_json::to_value(value)?))
    }

    /// Adds details (for a reject).
    pub fn with_details(mut self, value: Value) -> Self {
        if let Outcome::Reject { details, .. } = &mut self {
            *details = Some(value);
        }
        self
    }

    /// The outcome's kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Reschedule { .. } => "reschedule",
            Outcome::Complete { .. } => "complete",
            Outcome::Reject { .. } => "reject",
            Outcome::Kill { .. } => "kill",
            Outcome::Drop => "drop",
            Outcome::Migrate { .. } => "migrate",
        }
    }
}

/// A handler's failure: the document is rejected with this message (and
/// retried after the queue's backoff). Any error type converts into it with `?`.
///
/// ```
/// fn parse(s: &str) -> Result<u32, fetchq_worker::HandlerError> {
///     Ok(s.parse::<u32>()?)
/// }
/// assert!(parse("nope").unwrap_err().message().contains("invalid digit"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerError {
    message: String,
    details: Option<Value>,
}

impl HandlerError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: None,
        }
    }

    /// Adds structured details, stored in the queue's error log.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_outcome(self) -> Outcome {
        Outcome::Reject {
            message: self.message,
            details: self.details,
            ref_id: None,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::new(message)
    }
}

/// What a handler may return: an [`Outcome`], or a `Result` of one whose error
/// converts into [`HandlerError`] (any `std::error::Error`, or `HandlerError`).
///
/// ```
/// use fetchq_worker::{IntoHandlerResult, Outcome};
///
/// assert!(Outcome::complete().into_handler_result().is_ok());
/// let failed: Result<Outcome, std::num::ParseIntError> = "x".parse::<u8>().map(|_| Outcome::complete());
/// assert!(failed.into_handler_result().is_err());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler result",
    label = "a handler returns `fetchq::Result<fetchq::Outcome>` (any error converts) or an `Outcome`"
)]
pub trait IntoHandlerResult {
    /// The outcome, or the error that rejects the document.
    ///
    /// # Errors
    ///
    /// The handler's error, converted.
    fn into_handler_result(self) -> Result<Outcome, HandlerError>;
}

impl IntoHandlerResult for Outcome {
    fn into_handler_result(self) -> Result<Outcome, HandlerError> {
        Ok(self)
    }
}

impl<E: Into<HandlerError>> IntoHandlerResult for Result<Outcome, E> {
    fn into_handler_result(self) -> Result<Outcome, HandlerError> {
        self.map_err(Into::into)
    }
}

/// A document handler: its options and what it does with one document.
///
/// Implement it by hand, or let `#[fetchq::handler]` write it for an async fn.
///
/// ```
/// use async_trait::async_trait;
/// use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome};
///
/// struct SendMail;
///
/// #[async_trait]
/// impl Handler for SendMail {
///     type Payload = serde_json::Value;
///
///     fn options(&self) -> HandlerOptions {
///         HandlerOptions::new("mailer").concurrency(4)
///     }
///
///     async fn handle(&self, doc: Doc<Self::Payload>, _ctx: Context) -> Result<Outcome, HandlerError> {
///         let to = doc.payload["to"].as_str().ok_or_else(|| HandlerError::new("no recipient"))?;
///         println!("mailing {to}");
///         Ok(Outcome::complete())
///     }
/// }
/// ```
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The payload type; a payload that does not deserialize into it is
    /// rejected with the serde error.
    type Payload: DeserializeOwned + Send + 'static;

    /// Queue, version and limits.
    fn options(&self) -> HandlerOptions;

    /// Processes one document. An `Err` rejects it with the error's message; a
    /// panic is caught and rejects it too.
    async fn handle(&self, doc: Doc<Self::Payload>, ctx: Context) -> Result<Outcome, HandlerError>;
}
