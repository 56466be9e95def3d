//! The runtime: registered handlers become supervised pools, plus the
//! notification listener, the heartbeat, the outcome writer and (in one process
//! at a time) maintenance. Runs until SIGINT/SIGTERM or a shutdown token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fetchq_core::{Client, CronSchedule};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::HandlerOptions;
use crate::erased::{Erased, Registered};
use crate::handler::Handler;
use crate::pool::Shared;
use crate::registry::Registry;
use crate::stats::Stats;
use crate::telemetry::Telemetry;
use crate::trouble::{Incidents, Trouble};
use crate::{completer, heartbeat, leader, notifier, pool, registration};

/// Why the runtime could not run, or how it stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A handler's options are invalid, or no handler is registered.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be set up (connection URL, schema install).
    #[error(transparent)]
    Database(#[from] fetchq_core::Error),
    /// A second signal (or the force token) cut the graceful shutdown short;
    /// unfinished documents come back as orphans after their lease.
    #[error("forced shutdown: unfinished documents come back after their lease")]
    Forced,
}

/// The first schema with cron schedules (`0018_schedules.sql`).
const SCHEDULES_SCHEMA: i32 = 18;

/// Where the runtime finds its database.
#[derive(Debug, Clone)]
pub enum Source {
    /// A connection URL; the runtime opens its own pool.
    Url(String),
    /// An existing pool.
    Pool(PgPool),
    /// An existing client, with its
    /// [`transaction_pooling`](Client::transaction_pooling) setting.
    Client(Client),
}

impl From<&str> for Source {
    fn from(url: &str) -> Self {
        Source::Url(url.to_owned())
    }
}

impl From<String> for Source {
    fn from(url: String) -> Self {
        Source::Url(url)
    }
}

impl From<PgPool> for Source {
    fn from(pool: PgPool) -> Self {
        Source::Pool(pool)
    }
}

impl From<Client> for Source {
    fn from(client: Client) -> Self {
        Source::Client(client)
    }
}

/// Runs registered handlers until shut down.
///
/// ```no_run
/// # use fetchq_worker::{Handler, Runtime};
/// # async fn run(scrape: impl Handler, migrate: impl Handler) -> Result<(), fetchq_worker::WorkerError> {
/// Runtime::new("postgres://localhost/app")
///     .register(scrape)
///     .register(migrate)
///     .run()
///     .await
/// # }
/// ```
///
/// On start it installs the schema and creates the handlers' queues (both
/// idempotent; turn off with [`migrate`](Self::migrate) and
/// [`create_queues`](Self::create_queues)). On SIGINT/SIGTERM or
/// [`shutdown_token`](Self::shutdown_token) it stops picking, lets in-flight
/// handlers finish within [`shutdown_timeout`](Self::shutdown_timeout), gives
/// back what is left, and returns `Ok`. A second signal returns at once with
/// [`WorkerError::Forced`].
#[derive(Debug)]
pub struct Runtime {
    source: Source,
    handlers: Vec<Registered>,
    schedules: Vec<CronSchedule>,
    errors: Vec<String>,
    stats: Stats,
    shutdown: CancellationToken,
    force: CancellationToken,
    grace: Duration,
    signals: bool,
    maintenance: Option<Duration>,
    reindex: bool,
    rescue_after: Option<Duration>,
    migrate: bool,
    create_queues: bool,
    max_connections: u32,
    acquire_timeout: Duration,
    max_pending_outcomes: Option<usize>,
    transaction_pooling: bool,
    listen_url: Option<String>,
    #[cfg(feature = "metrics")]
    metrics: Option<MetricsBind>,
    #[cfg(feature = "otlp")]
    otlp: Option<crate::OtlpOptions>,
}

/// Where the metrics endpoint listens.
#[cfg(feature = "metrics")]
#[derive(Debug)]
enum MetricsBind {
    Addr(String),
    Listener(std::net::TcpListener),
}

/// The bound metrics endpoint, when asked for.
#[cfg(feature = "metrics")]
type MetricsListener = Option<tokio::net::TcpListener>;
#[cfg(not(feature = "metrics"))]
type MetricsListener = ();

/// Places among the outcomes waiting to be written, per slot of every pool
/// (the larger of its concurrency and batch), by default.
const PENDING_PER_SLOT: usize = 4;

/// The fewest places among the outcomes waiting to be written, by default.
const MIN_PENDING_OUTCOMES: usize = 64;

/// How long a crashed process's leases wait before maintenance releases
/// them, by default.
const DEFAULT_RESCUE_AFTER: Duration = Duration::from_secs(30);

/// The shortest `rescue_after` (its renewals run every sixth of it).
const MIN_RESCUE_AFTER: Duration = Duration::from_millis(200);

/// How much of `shutdown_timeout` is kept, at most, for releasing the
/// documents of cancelled handlers and writing the last outcomes.
const FINAL_RESERVE: Duration = Duration::from_secs(2);

impl Runtime {
    /// A runtime on a database URL, a pool or a [`Client`].
    pub fn new(source: impl Into<Source>) -> Self {
        Self {
            source: source.into(),
            handlers: Vec::new(),
            schedules: Vec::new(),
            errors: Vec::new(),
            stats: Stats::default(),
            shutdown: CancellationToken::new(),
            force: CancellationToken::new(),
            grace: Duration::from_secs(30),
            signals: true,
            maintenance: Some(Duration::from_secs(1)),
            reindex: true,
            rescue_after: Some(DEFAULT_RESCUE_AFTER),
            migrate: true,
            create_queues: true,
            max_connections: 20,
            acquire_timeout: Duration::from_secs(5),
            max_pending_outcomes: None,
            transaction_pooling: false,
            listen_url: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "otlp")]
            otlp: None,
        }
    }

    /// Serves this process's metrics in the Prometheus text format at
    /// `http://<addr>/metrics` while the runtime runs (feature `metrics`):
    /// `fetchq_handler_duration_seconds{queue,handler,outcome}` (histogram),
    /// `fetchq_worker_documents_in_flight`, picks and their latency, written
    /// outcomes, handler failures, lease losses, heartbeats, outcome batches
    /// and their latency, database errors by activity. Labels are queue and
    /// handler names, never subjects. [`run`](Self::run) fails with
    /// [`WorkerError::Config`] when the address cannot be bound.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), fetchq_worker::WorkerError> {
    /// fetchq_worker::Runtime::new("postgres://localhost/app")
    ///     .metrics_addr("0.0.0.0:9464")
    ///     // .register(...)
    ///     .run()
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(mut self, addr: impl Into<String>) -> Self {
        self.metrics = Some(MetricsBind::Addr(addr.into()));
        self
    }

    /// As [`metrics_addr`](Self::metrics_addr), on a listener already bound
    /// (a random port for tests, a socket handed over by a supervisor).
    ///
    /// ```no_run
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// println!("metrics at http://{}/metrics", listener.local_addr().unwrap());
    /// let runtime = fetchq_worker::Runtime::new("postgres://localhost/app").metrics_listener(listener);
    /// # let _ = runtime;
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.metrics = Some(MetricsBind::Listener(listener));
        self
    }

    /// Pushes this process's metrics to an OpenTelemetry collector over
    /// OTLP/HTTP while the runtime runs (feature `otlp`): the same families
    /// as [`metrics_addr`](Self::metrics_addr), named without their
    /// `_total`/`_seconds` suffixes, cumulative. The last values are pushed
    /// at shutdown (not on a forced one). A collector that is down or slow
    /// costs a failed push, never a handler or a pick: the first failure is
    /// a warning, the recovery an info line.
    /// [`run`](Self::run) fails with [`WorkerError::Config`] on bad options.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), fetchq_worker::WorkerError> {
    /// fetchq_worker::Runtime::new("postgres://localhost/app")
    ///     .otlp(fetchq_worker::OtlpOptions::new().endpoint("http://otel-collector:4318"))
    ///     // .register(...)
    ///     .run()
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "otlp")]
    pub fn otlp(mut self, options: crate::OtlpOptions) -> Self {
        self.otlp = Some(options);
        self
    }

    /// Adds a handler; invalid options make [`run`](Self::run) fail.
    pub fn register<H: Handler>(self, handler: H) -> Self {
        self.register_with(handler, |options| options)
    }

    /// Adds a handler with its options adjusted at run time: a macro
    /// handler's concurrency, batch or lease taken from configuration.
    /// Invalid options make [`run`](Self::run) fail.
    ///
    /// ```no_run
    /// # use fetchq_worker::{async_trait, Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
    /// # struct Scrape;
    /// # #[async_trait]
    /// # impl Handler for Scrape {
    /// #     type Payload = serde_json::Value;
    /// #     fn options(&self) -> HandlerOptions { HandlerOptions::new("avengers") }
    /// #     async fn handle(&self, _: Doc<serde_json::Value>, _: Context) -> Result<Outcome, HandlerError> { Ok(Outcome::complete()) }
    /// # }
    /// let workers: usize = std::env::var("WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    /// let runtime = Runtime::new("postgres://localhost/app")
    ///     .register_with(Scrape, |o| o.concurrency(workers).batch(workers * 4));
    /// # let _ = runtime;
    /// ```
    pub fn register_with<H: Handler>(
        mut self,
        handler: H,
        adjust: impl FnOnce(HandlerOptions) -> HandlerOptions,
    ) -> Self {
        let options = adjust(handler.options());
        match options.validate().and_then(|()| options.cron_schedule()) {
            Ok(Some(schedule)) => self.schedules.push(schedule),
            Ok(None) => {}
            Err(e) => self.errors.push(e),
        }
        self.handlers.push(Registered {
            options,
            handler: Arc::new(Erased(Arc::new(handler))),
        });
        self
    }

    /// Sets a cron schedule when the runtime starts: at each tick, the
    /// maintenance leader (one process at a time, see
    /// [`maintenance`](Self::maintenance)) pushes the schedule's document, or
    /// makes it due again; a registered handler of its queue and version
    /// runs it. Ticks missed while no runtime ran are collapsed into one; a
    /// tick that finds the document still running is skipped. Setting the same
    /// schedule at every start keeps its planned tick (see
    /// [`Client::schedule_set`]). Its queue is created with the handlers'
    /// queues (unless [`create_queues`](Self::create_queues) is off). An
    /// invalid schedule makes [`run`](Self::run) fail with
    /// [`WorkerError::Config`].
    ///
    /// A handler can carry its own schedule instead:
    /// [`HandlerOptions::cron`](crate::HandlerOptions::cron), or
    /// `#[fetchq::handler(queue = "...", cron = "0 3 * * *", tz = "Europe/Stockholm")]`.
    ///
    /// ```no_run
    /// # async fn run(report: impl fetchq_worker::Handler) -> Result<(), fetchq_worker::WorkerError> {
    /// use fetchq_worker::{CronSchedule, Runtime};
    /// Runtime::new("postgres://localhost/app")
    ///     .schedule(
    ///         CronSchedule::new("nightly-report", "0 3 * * *")
    ///             .tz("Europe/Stockholm")
    ///             .queue("reports")
    ///             .subject("nightly")
    ///             .payload(serde_json::json!({"kind": "full"})),
    ///     )
    ///     .register(report)
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn schedule(mut self, schedule: CronSchedule) -> Self {
        if let Err(e) = schedule.validate() {
            self.errors
                .push(format!("schedule {:?}: {e}", schedule.name));
        }
        self.schedules.push(schedule);
        self
    }

    /// How long a graceful shutdown may take in all (default 30 s): [`run`](Self::run)
    /// returns within it, whatever the handlers or the database do.
    ///
    /// In-flight handlers keep running (their cancellation tokens do not fire
    /// when shutdown starts) until the last fifth of it (at most the last 2 s),
    /// which is kept for giving documents back: then their tokens fire, they
    /// get a moment to return, and the documents of those still running, or
    /// that returned an error or a reject once cancelled, are released (pending
    /// again at once, the attempt not counted). Outcomes that still cannot be
    /// written when it ends (database down) are dropped: their documents come
    /// back after their lease.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn run(runtime: fetchq_worker::Runtime) {
    /// let runtime = runtime.shutdown_timeout(Duration::from_secs(60));
    /// # let _ = runtime; }
    /// ```
    pub fn shutdown_timeout(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Whether SIGINT/SIGTERM shut the runtime down (default true).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// How often maintenance runs (in one process at a time); `None` turns it
    /// off in this process. Default: every second.
    pub fn maintenance(mut self, every: Option<Duration>) -> Self {
        self.maintenance = every;
        self
    }

    /// Whether the maintenance leader rebuilds bloated indexes of the queues'
    /// documents tables (default true), with `REINDEX INDEX CONCURRENTLY`:
    /// those over twice their packed size, looked for once a minute, as River's
    /// reindexer and Oban's `Reindexer` plugin do on a calendar. PostgreSQL
    /// frees an index page only when it is empty, so a queue of growing
    /// subjects (sequence numbers, timestamps) whose completed documents are
    /// deleted keeps a sparse primary key: the soak measured 6% leaf density.
    /// See [`Client::reindex_bloated`](fetchq_core::Client::reindex_bloated).
    /// Off through a transaction pooler, and when the role does not own the
    /// tables. Turn it off when something else (`pg_repack`, a DBA's cron)
    /// rebuilds them.
    ///
    /// ```
    /// # fn run(runtime: fetchq_worker::Runtime) {
    /// let runtime = runtime.reindex(false);
    /// # let _ = runtime; }
    /// ```
    pub fn reindex(mut self, on: bool) -> Self {
        self.reindex = on;
        self
    }

    /// How soon a crashed process's documents run elsewhere (default 30
    /// seconds; `None`: only when each lease runs out, 5 minutes by default).
    ///
    /// The runtime registers itself in the database (schema 21) and renews
    /// the registration every sixth of `rescue_after`; its lease tokens carry
    /// the registration. Once a registration has gone `rescue_after` without
    /// a renewal (the process was killed, or cut off), maintenance releases
    /// its leases at once: retried as orphans are, or dead past max attempts.
    ///
    /// So that a process that is only cut off never runs a document beside
    /// the worker it was handed to, a runtime that has not renewed for half of
    /// `rescue_after` cancels its running handlers (their results are
    /// discarded) and picks nothing until a renewal gets through. A database
    /// outage (a PostgreSQL restart) shorter than a third of `rescue_after`
    /// (half, less one renewal interval) cancels nothing. Must
    /// be between 200 ms and a day.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn run(runtime: fetchq_worker::Runtime) {
    /// // handlers run for minutes: outages of up to a minute cancel nothing
    /// let runtime = runtime.rescue_after(Some(Duration::from_secs(120)));
    /// # let _ = runtime; }
    /// ```
    pub fn rescue_after(mut self, after: Option<Duration>) -> Self {
        self.rescue_after = after;
        self
    }

    /// Whether to install or upgrade the schema on start (default true).
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }

    /// Whether to create the handlers' queues on start (default true).
    pub fn create_queues(mut self, on: bool) -> Self {
        self.create_queues = on;
        self
    }

    /// Pool size when the runtime connects from a URL (default 20).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a database call waits for a free connection of the runtime's
    /// pool before failing with a transient error (default 5 s), so an outage
    /// is noticed, logged and retried instead of every call queueing silently.
    /// Applies when the runtime opens its own pool (from a URL); a pool you pass
    /// in keeps its own `acquire_timeout` (set it with
    /// [`PgPoolOptions::acquire_timeout`](sqlx::postgres::PgPoolOptions::acquire_timeout)).
    ///
    /// ```
    /// use std::time::Duration;
    /// let runtime = fetchq_worker::Runtime::new("postgres://localhost/app")
    ///     .acquire_timeout(Duration::from_secs(2));
    /// # let _ = runtime;
    /// ```
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How many handler outcomes may wait to be written at once (default:
    /// four times the sum over the handlers of the larger of concurrency and
    /// batch, at least 64, so a slot does not wait for the previous round's
    /// commit and a pool that picks 100 at a time writes its outcomes in
    /// batches as large). A handler's slot is freed only once
    /// its outcome has a place among them, so when writes are slow the pools
    /// stop picking: documents picked but not yet written never exceed the
    /// total concurrency plus this bound.
    ///
    /// ```
    /// let runtime = fetchq_worker::Runtime::new("postgres://localhost/app").max_pending_outcomes(64);
    /// # let _ = runtime;
    /// ```
    pub fn max_pending_outcomes(mut self, n: usize) -> Self {
        self.max_pending_outcomes = Some(n.max(1));
        self
    }

    /// Says the runtime's database is reached through a transaction pooler:
    /// PgBouncer in `pool_mode = transaction` (default false; a
    /// [`Client`] source with
    /// [`transaction_pooling`](Client::transaction_pooling) on turns it on
    /// too). Then:
    ///
    /// - every statement is sent unnamed, inside a transaction (see
    ///   [`Client::transaction_pooling`]);
    /// - notifications are listened for on [`listen_url`](Self::listen_url)
    ///   when given, and otherwise not at all: LISTEN does not work through
    ///   a transaction pooler, so idle pools find new documents when they
    ///   poll (each handler's [`idle_poll`](crate::HandlerOptions::idle_poll),
    ///   1 s by default) and a reschedule written by this process still wakes
    ///   them at once;
    /// - the maintenance leader holds its lock on [`listen_url`](Self::listen_url)
    ///   when given, and otherwise in a transaction it keeps open while it
    ///   leads (one server connection of the pooler; do not set PgBouncer's
    ///   `idle_transaction_timeout` below a few seconds, or leadership moves
    ///   at each timeout).
    ///
    /// PgBouncer in session mode needs none of this.
    ///
    /// ```
    /// let runtime = fetchq_worker::Runtime::new("postgres://app:secret@pgbouncer:6432/app")
    ///     .transaction_pooling(true)
    ///     .listen_url("postgres://app:secret@db:5432/app");
    /// # let _ = runtime;
    /// ```
    pub fn transaction_pooling(mut self, on: bool) -> Self {
        self.transaction_pooling = on;
        self
    }

    /// A direct connection to the database (not through a transaction
    /// pooler), for what needs a session: LISTEN for wake-ups, and the
    /// maintenance leader's lock. Two connections per process at most. Used
    /// only with [`transaction_pooling`](Self::transaction_pooling); without
    /// it the runtime's own pool has sessions. An invalid URL makes
    /// [`run`](Self::run) fail with [`WorkerError::Config`]; an unreachable
    /// one is retried (pools poll meanwhile).
    ///
    /// ```
    /// let runtime = fetchq_worker::Runtime::new("postgres://app:secret@pgbouncer:6432/app")
    ///     .transaction_pooling(true)
    ///     .listen_url("postgres://app:secret@db:5432/app");
    /// # let _ = runtime;
    /// ```
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// Cancel it to shut down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Cancel it to stop at once (after or instead of a graceful shutdown).
    pub fn force_token(&self) -> CancellationToken {
        self.force.clone()
    }

    /// Live counters per handler.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Runs until shut down.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Config`] for invalid handlers, [`WorkerError::Database`]
    /// when the schema cannot be installed or a queue created, and
    /// [`WorkerError::Forced`] after a forced shutdown. Database trouble while
    /// running is retried with backoff, not returned.
    #[cfg_attr(not(feature = "metrics"), allow(unused_mut))]
    pub async fn run(mut self) -> Result<(), WorkerError> {
        if let Some(e) = self.errors.first() {
            return Err(WorkerError::Config(e.clone()));
        }
        if self.handlers.is_empty() {
            return Err(WorkerError::Config("no handler registered".into()));
        }
        if let Some(after) = self.rescue_after
            && !(MIN_RESCUE_AFTER..=fetchq_core::MAX_RESCUE_AFTER).contains(&after)
        {
            return Err(WorkerError::Config(format!(
                "rescue_after must be between 200 ms and 1 day, got {after:?}"
            )));
        }
        let incidents = Incidents::default();
        let client = match &self.source {
            Source::Pool(pool) => Client::new(pool.clone()),
            Source::Client(client) => client.clone(),
            Source::Url(url) => Client::new(
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.acquire_timeout)
                    .connect_lazy(url)
                    .map_err(fetchq_core::Error::from)?,
            ),
        };
        let pooling = self.transaction_pooling || client.is_transaction_pooling();
        let client = client.transaction_pooling(pooling);
        let pool = client.pool().clone();
        let direct = match (&self.listen_url, pooling) {
            (Some(url), true) => Some(
                url.parse::<PgConnectOptions>()
                    .map_err(|e| WorkerError::Config(format!("listen_url: {e}")))?,
            ),
            _ => None,
        };
        // after the pool: a bad URL fails before any exporter starts
        #[cfg_attr(not(feature = "metrics"), allow(unused_variables, unused_mut))]
        let (telemetry, mut metrics_listener) = self.telemetry(&incidents).await?;
        if self.signals {
            spawn_signal_handler(self.shutdown.clone(), self.force.clone());
        }
        let setup = self.setup(&client, &incidents).await;
        #[cfg(feature = "otlp")]
        if setup.is_err()
            && let Some(otlp) = &telemetry.exporters().otlp
        {
            otlp.shutdown().await;
        }
        setup?;

        // shutdown's clock: handlers are cancelled at `deadline`, writing
        // stops at `hard` (the end of shutdown_timeout, or forced)
        let hard = self.force.child_token();
        let deadline = hard.child_token();
        let reserve = (self.grace / 5).min(FINAL_RESERVE);
        let clock = tokio::spawn(shutdown_clock(
            self.shutdown.clone(),
            deadline.clone(),
            hard.clone(),
            self.grace,
            reserve,
        ));

        let registry = Registry::default();
        // picks wait for the registration (when on), and its gate decides
        // which leases may run
        let (gate, owner) = registration::gate(self.rescue_after.is_some(), &registry);
        // a slot is free once its outcome has a place here: with room for
        // several rounds of every pool, a slot does not wait for the previous
        // round's commit before its next pick, and a pool that picks ahead
        // (batch above concurrency) gets its outcomes written in batches as
        // large as its picks
        let bound = self.max_pending_outcomes.unwrap_or_else(|| {
            self.handlers
                .iter()
                .map(|h| h.options.concurrency.max(h.options.get_batch()))
                .sum::<usize>()
                .saturating_mul(PENDING_PER_SLOT)
                .max(MIN_PENDING_OUTCOMES)
        });
        let (tx, rx) = mpsc::channel(bound);
        let background = CancellationToken::new();
        let mut services = JoinSet::new();
        // one waker per pool, by queue: notifications and the completer wake them
        let wakes: Vec<Arc<Notify>> = self
            .handlers
            .iter()
            .map(|_| Arc::new(Notify::new()))
            .collect();
        let mut wakers: HashMap<String, Vec<Arc<Notify>>> = HashMap::new();
        for (reg, wake) in self.handlers.iter().zip(&wakes) {
            wakers
                .entry(reg.options.queue.clone())
                .or_default()
                .push(wake.clone());
        }
        let completer = tokio::spawn(completer::run(
            client.clone(),
            rx,
            registry.clone(),
            hard.clone(),
            incidents.clone(),
            wakers.clone(),
            telemetry.clone(),
        ));
        let shortest = self
            .handlers
            .iter()
            .map(|h| h.options.lease)
            .min()
            .unwrap_or(Duration::from_secs(300));
        services.spawn(heartbeat::run(
            client.clone(),
            registry.clone(),
            heartbeat::tick_for(shortest),
            background.clone(),
            incidents.clone(),
            telemetry.clone(),
        ));
        services.spawn(heartbeat::watch_expiry(
            registry.clone(),
            heartbeat::tick_for(shortest),
            background.clone(),
        ));
        if let Some(after) = self.rescue_after {
            services.spawn(registration::run(
                client.clone(),
                registry.clone(),
                gate,
                after,
                background.clone(),
                hard.clone(),
                incidents.clone(),
            ));
        }
        #[cfg(feature = "metrics")]
        if let (Some(listener), Some(exporter)) =
            (metrics_listener.take(), &telemetry.exporters().prom)
        {
            services.spawn(crate::telemetry::prom::serve(
                listener,
                exporter.clone(),
                background.clone(),
            ));
        }
        if let Some(every) = self.maintenance {
            let own = pool.connect_options().as_ref().clone();
            let lock = match (&direct, pooling) {
                (Some(d), _) => leader::Lock::Session(d.clone()),
                (None, true) => leader::Lock::Transaction(own),
                (None, false) => leader::Lock::Session(own),
            };
            services.spawn(leader::run(
                client.clone(),
                lock,
                every,
                self.reindex,
                background.clone(),
                incidents.clone(),
            ));
        }

        let shared = Shared {
            client: client.clone(),
            registry: registry.clone(),
            outcomes: tx,
            slots: Arc::new(Semaphore::new(bound)),
            shutdown: self.shutdown.clone(),
            deadline,
            hard,
            cancel_wait: reserve / 2,
            lost_wait: self
                .rescue_after
                .map_or(reserve / 2, |after| (reserve / 2).min(after / 4)),
            incidents: incidents.clone(),
            telemetry: telemetry.clone(),
            pools: self.handlers.len(),
            owner,
        };
        let mut pools = JoinSet::new();
        for (reg, wake) in self.handlers.into_iter().zip(wakes) {
            let counters = self.stats.handler(&reg.options.name());
            pools.spawn(pool::run(reg, shared.clone(), wake, counters));
        }
        // LISTEN needs a session: not through a transaction pooler
        let listen = match (direct, pooling) {
            (Some(d), _) => Some(
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(self.acquire_timeout)
                    .connect_lazy_with(d),
            ),
            (None, true) => {
                tracing::info!(
                    "transaction pooling without listen_url: no notifications, idle pools poll"
                );
                None
            }
            (None, false) => Some(pool.clone()),
        };
        if let Some(listen) = listen {
            services.spawn(notifier::run(
                listen,
                wakers,
                background.clone(),
                incidents.clone(),
            ));
        }
        drop(shared);

        // pools return once shut down and drained
        while pools.join_next().await.is_some() {}
        // the completer writes what the handlers left, then stops
        let _ = completer.await;
        clock.abort();
        background.cancel();
        // services stop at once when cancelled (the leader after giving its
        // lock back, 2 s at most); do not let one hold us up
        let stopped = async { while services.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_millis(2500), stopped)
            .await
            .is_err()
        {
            services.abort_all();
        }
        // the last values pushed, bounded by the push timeout; a forced
        // shutdown waits for no collector
        #[cfg(feature = "otlp")]
        if let Some(otlp) = &telemetry.exporters().otlp {
            if self.force.is_cancelled() {
                otlp.abandon();
            } else {
                otlp.shutdown().await;
            }
        }
        drop(telemetry);
        if self.force.is_cancelled() {
            tracing::warn!(leases = registry.len(), "forced shutdown");
            return Err(WorkerError::Forced);
        }
        tracing::info!("fetchq runtime stopped");
        Ok(())
    }

    /// Starts the exporters asked for: binds the metrics endpoint (served
    /// once the runtime runs) and starts the OTLP push.
    async fn telemetry(
        &mut self,
        incidents: &Incidents,
    ) -> Result<(Telemetry, MetricsListener), WorkerError> {
        let counters = Arc::new(crate::telemetry::RuntimeCounters::default());
        #[allow(unused_variables)]
        let sources = crate::telemetry::Sources {
            stats: self.stats.clone(),
            incidents: incidents.clone(),
            runtime: counters.clone(),
        };
        #[allow(unused_mut)]
        let mut exporters = crate::telemetry::Exporters::default();
        #[cfg(feature = "metrics")]
        let listener = match self.metrics.take() {
            None => None,
            Some(bind) => {
                let listener = match bind {
                    MetricsBind::Addr(addr) => tokio::net::TcpListener::bind(&addr)
                        .await
                        .map_err(|e| WorkerError::Config(format!("metrics_addr {addr}: {e}")))?,
                    MetricsBind::Listener(l) => l
                        .set_nonblocking(true)
                        .and_then(|()| tokio::net::TcpListener::from_std(l))
                        .map_err(|e| WorkerError::Config(format!("metrics_listener: {e}")))?,
                };
                exporters.prom = Some(Arc::new(crate::telemetry::prom::Exporter::new(
                    sources.clone(),
                )));
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(%addr, "serving metrics at /metrics");
                }
                Some(listener)
            }
        };
        #[cfg(not(feature = "metrics"))]
        let listener = ();
        #[cfg(feature = "otlp")]
        if let Some(opts) = self.otlp.take() {
            let otlp = crate::telemetry::otlp::Exporter::start(&opts, sources)
                .map_err(WorkerError::Config)?;
            exporters.otlp = Some(otlp);
        }
        Ok((Telemetry::new(counters, exporters), listener))
    }

    /// Installs the schema and creates the queues, retrying while the
    /// database is unreachable (until shutdown).
    async fn setup(&self, client: &Client, incidents: &Incidents) -> Result<(), WorkerError> {
        let mut trouble = Trouble::new("starting up", incidents);
        loop {
            let attempt = async {
                if self.migrate {
                    client.migrate().await?;
                }
                if self.create_queues {
                    for h in &self.handlers {
                        client.queue_create(&h.options.queue).await?;
                    }
                    for s in &self.schedules {
                        client.queue_create(&s.queue).await?;
                    }
                }
                if !self.schedules.is_empty() {
                    let schema = client.info().await?.schema_version;
                    if schema < SCHEDULES_SCHEMA {
                        return Ok(Err(format!(
                            "cron schedules need fetchq schema {SCHEDULES_SCHEMA} or later, the database has schema {schema}: \
                             migrate it (`fetchq migrate`, or Runtime::migrate(true))"
                        )));
                    }
                }
                for s in &self.schedules {
                    client.schedule_set(s).await?;
                }
                Ok::<Result<(), String>, fetchq_core::Error>(Ok(()))
            };
            let attempt = tokio::select! {
                a = attempt => a,
                _ = self.shutdown.cancelled() => return Ok(()),
            };
            match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(config)) => return Err(WorkerError::Config(config)),
                Err(e) if e.is_transient() => {
                    let wait = trouble.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return Ok(()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Fires `deadline` when handlers must stop (`grace - reserve` after shutdown
/// starts) and `hard` when shutdown must be over (`grace` after it starts).
async fn shutdown_clock(
    shutdown: CancellationToken,
    deadline: CancellationToken,
    hard: CancellationToken,
    grace: Duration,
    reserve: Duration,
) {
    shutdown.cancelled().await;
    tokio::time::sleep(grace.saturating_sub(reserve)).await;
    deadline.cancel();
    tokio::time::sleep(reserve).await;
    hard.cancel();
}

fn spawn_signal_handler(shutdown: CancellationToken, force: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for first in [true, false] {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if first {
                tracing::info!(
                    "shutdown requested: finishing in-flight work (signal again to force)"
                );
                shutdown.cancel();
            } else {
                tracing::warn!("second signal: stopping now");
                force.cancel();
            }
        }
    });
}
