//! The client handle.

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::error::{Error, Result};
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
#[derive(Debug, Clone)]
pub struct Client {
    pool: PgPool,
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
        Self { pool }
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
        if max_connections == 0 {
            return Err(Error::InvalidArgument {
                message: "max_connections must be at least 1".into(),
            });
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(CONNECT_ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        Ok(Self::new(pool))
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
        let row = sqlx::query(sql!("info")).fetch_one(&self.pool).await?;
        Ok(Info {
            version: row.try_get(0)?,
            schema_version: row.try_get(1)?,
        })
    }
}
