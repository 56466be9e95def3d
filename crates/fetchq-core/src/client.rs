//! The client handle.

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::error::{Error, Result};
use crate::exec::{CallerExec, PoolExec};
use crate::migrate::{MigrationReport, migrate};
use crate::sql;

/// A handle on fetchq in one PostgreSQL database: a thin, cloneable wrapper
/// over an [`sqlx::PgPool`] with a typed method for every SQL function.
///
/// Methods ending in `_with` take any executor instead of the pool, so a
/// document can be pushed (or resolved) inside the caller's own transaction:
///
/// ```no_run
/// # use fetchq_core::{Client, NewDoc};
/// # async fn run(client: Client) -> fetchq_core::Result<()> {
/// let mut tx = client.pool().begin().await?;
/// sqlx::query("INSERT INTO users (email) VALUES ($1)").bind("ada@example.com").execute(&mut *tx).await?;
/// client.push_with(&mut *tx, "mailer", &NewDoc::new("welcome:ada@example.com")).await?;
/// tx.commit().await?; // the user and the mail exist together, or neither does
/// # Ok(()) }
/// ```
///
/// Behind PgBouncer in transaction pooling mode, turn on
/// [`transaction_pooling`](Self::transaction_pooling) (or connect with
/// [`ClientOptions::transaction_pooling`]).
#[derive(Debug, Clone)]
pub struct Client {
    pool: PgPool,
    transaction_pooling: bool,
}

/// How [`Client::connect_opts`] connects.
///
/// ```
/// use std::time::Duration;
/// let opts = fetchq_core::ClientOptions::new()
///     .max_connections(32)
///     .acquire_timeout(Duration::from_secs(2))
///     .transaction_pooling(true);
/// assert!(opts.is_transaction_pooling());
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    max_connections: u32,
    acquire_timeout: std::time::Duration,
    transaction_pooling: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientOptions {
    /// 10 connections, [`CONNECT_ACQUIRE_TIMEOUT`], no transaction pooling:
    /// the settings of [`Client::connect`].
    pub fn new() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: CONNECT_ACQUIRE_TIMEOUT,
            transaction_pooling: false,
        }
    }

    /// Pool size (at least 1; 0 makes [`Client::connect_opts`] fail with
    /// [`Error::InvalidArgument`]).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a call waits for a free connection before failing with a
    /// transient error.
    pub fn acquire_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The URL is a transaction pooler (PgBouncer `pool_mode = transaction`):
    /// see [`Client::transaction_pooling`].
    pub fn transaction_pooling(mut self, on: bool) -> Self {
        self.transaction_pooling = on;
        self
    }

    /// Whether [`transaction_pooling`](Self::transaction_pooling) is on.
    pub fn is_transaction_pooling(&self) -> bool {
        self.transaction_pooling
    }
}

/// How long a call of a [`Client::connect`]ed client waits for a connection.
///
/// ```
/// assert_eq!(fetchq_core::CONNECT_ACQUIRE_TIMEOUT.as_secs(), 5);
/// ```
pub const CONNECT_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Versions reported by `fetchq.info()`.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let info: fetchq_core::Info = client.info().await?;
/// println!("fetchq {} (schema {})", info.version, info.schema_version);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Engine version string, `5.<schema>.0`.
    pub version: String,
    /// Highest applied migration.
    pub schema_version: i32,
}

impl Client {
    /// Wraps an existing pool.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sqlx::Error> {
    /// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
    /// let client = fetchq_core::Client::new(pool);
    /// # Ok(()) }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            transaction_pooling: false,
        }
    }

    /// Says whether the pool's server is a transaction pooler: PgBouncer in
    /// `pool_mode = transaction` (any version; 1.21+ with
    /// `max_prepared_statements` is not needed), or another pooler that gives
    /// a server connection to a client for one transaction at a time.
    ///
    /// sqlx runs a statement with parameters in two round trips (Parse, then
    /// Bind and Execute) and prepares it under a name it caches per
    /// connection; between the two, a transaction pooler may move the client
    /// to another server connection, and the statement is missing there
    /// ("prepared statement sqlx_s_3 does not exist"), or another client's
    /// has its name ("already exists"). `statement_cache_capacity(0)` does not
    /// help: sqlx still names the statements. With this on, every statement
    /// of this client is sent unnamed, and every call that is not given a
    /// transaction runs in its own `BEGIN ... COMMIT`, so both round trips
    /// meet the same server connection and nothing is left on it. It costs
    /// two round trips per call (the `BEGIN` and the `COMMIT`) and the
    /// statement cache.
    ///
    /// The `_with` methods must then be given a transaction (or a connection
    /// inside one), not the pool. Statements of your own through
    /// [`pool`](Self::pool) need the same care: run them in a transaction
    /// with `.persistent(false)`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://app:secret@pgbouncer:6432/app").await?;
    /// let client = fetchq_core::Client::new(pool).transaction_pooling(true);
    /// client.push("mailer", &fetchq_core::NewDoc::new("welcome:ada")).await?;
    /// # Ok(()) }
    /// ```
    pub fn transaction_pooling(mut self, on: bool) -> Self {
        self.transaction_pooling = on;
        self
    }

    /// Whether [`transaction_pooling`](Self::transaction_pooling) is on.
    ///
    /// ```no_run
    /// # fn run(pool: sqlx::PgPool) {
    /// assert!(!fetchq_core::Client::new(pool).is_transaction_pooling());
    /// # }
    /// ```
    pub fn is_transaction_pooling(&self) -> bool {
        self.transaction_pooling
    }

    /// The pool as the engine calls use it.
    pub(crate) fn exec(&self) -> PoolExec {
        PoolExec {
            pool: self.pool.clone(),
            transaction_pooling: self.transaction_pooling,
        }
    }

    /// A caller's executor as the engine calls use it.
    pub(crate) fn caller<E>(&self, inner: E) -> CallerExec<E> {
        CallerExec {
            inner,
            transaction_pooling: self.transaction_pooling,
        }
    }

    /// Connects a new pool (10 connections at most) to `url`. A call waits at
    /// most [`CONNECT_ACQUIRE_TIMEOUT`] (5 s) for a connection, so an outage
    /// fails fast with a transient error ([`Error::is_transient`](crate::Error::is_transient))
    /// instead of queueing silently; for other settings build your own pool
    /// and use [`Client::new`].
    ///
    /// # Errors
    ///
    /// When the database cannot be reached within the acquire timeout.
    ///
    /// ```no_run
    /// # async fn run() -> fetchq_core::Result<()> {
    /// let client = fetchq_core::Client::connect("postgres://localhost/app").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, 10).await
    }

    /// As [`connect`](Self::connect), with a pool of at most
    /// `max_connections` connections (at least 1). Size it to the callers
    /// sharing this client: pushers, HTTP handlers, a worker's pools.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for 0 connections; as [`connect`](Self::connect).
    ///
    /// ```no_run
    /// # async fn run() -> fetchq_core::Result<()> {
    /// let client = fetchq_core::Client::connect_with("postgres://localhost/app", 32).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_opts(url, &ClientOptions::new().max_connections(max_connections)).await
    }

    /// Connects a new pool to `url` with `options`: its size, its acquire
    /// timeout, and whether `url` is a transaction pooler such as PgBouncer
    /// in `pool_mode = transaction` (see [`transaction_pooling`](Self::transaction_pooling)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for 0 connections; as [`connect`](Self::connect).
    ///
    /// ```no_run
    /// # async fn run() -> fetchq_core::Result<()> {
    /// use fetchq_core::{Client, ClientOptions};
    /// let client = Client::connect_opts(
    ///     "postgres://app:secret@pgbouncer:6432/app",
    ///     &ClientOptions::new().max_connections(32).transaction_pooling(true),
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_opts(url: &str, options: &ClientOptions) -> Result<Self> {
        if options.max_connections == 0 {
            return Err(Error::InvalidArgument {
                message: "max_connections must be at least 1".into(),
            });
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        Ok(Self::new(pool).transaction_pooling(options.transaction_pooling))
    }

    /// The underlying pool, for your own queries and transactions.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let n: i64 = sqlx::query_scalar("SELECT 1::bigint").fetch_one(client.pool()).await?;
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Installs or upgrades the schema; see [`migrate`](crate::migrate()).
    ///
    /// # Errors
    ///
    /// As [`migrate`](crate::migrate()).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let report = client.migrate().await?;
    /// assert_eq!(report.to_version, fetchq_core::latest_schema_version());
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<MigrationReport> {
        migrate(&self.pool).await
    }

    /// The engine and schema versions (`fetchq.info()`).
    ///
    /// # Errors
    ///
    /// Database errors, for example when the schema is not installed.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let info = client.info().await?;
    /// assert_eq!(info.schema_version, fetchq_core::latest_schema_version());
    /// # Ok(()) }
    /// ```
    pub async fn info(&self) -> Result<Info> {
        let row = sqlx::query(sql!("info")).fetch_one(self.exec()).await?;
        Ok(Info {
            version: row.try_get(0)?,
            schema_version: row.try_get(1)?,
        })
    }
}
