//! Rebuilding the bloated indexes of queue documents tables, and dropping
//! what a failed rebuild left behind (see `sql/queries/bloated_indexes.sql`).
//!
//! PostgreSQL frees an index page only when it is empty, so a queue whose
//! subjects grow and whose documents are mostly deleted keeps an ever sparser
//! primary key; `REINDEX INDEX CONCURRENTLY` rebuilds it without blocking
//! reads or writes. It cannot run in a transaction block, hence in no SQL
//! function: this is the one maintenance step that lives in the client.

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

use crate::error::{Error, Result};
use crate::per_queue::{has_sqlstate, is_missing_table};
use crate::{Client, sql};

/// A primary key is rebuilt when it is more than this many times its packed
/// size (and at least 256 kB and a tenth of its table over it). Keys filled
/// in random order sit near 1.3.
pub const REINDEX_RATIO: f64 = 2.0;

/// How long dropping a leftover may wait for its table: someone else's
/// build of an index of that table holds it, and then it is theirs.
const LEFTOVER_LOCK_TIMEOUT: &str = "1s";

/// How often a running rebuild looks for sessions waiting for its lock.
const YIELD_CHECK: Duration = Duration::from_millis(250);

/// How often a session running a rebuild checks that its client is still
/// there: a killed process's rebuild stops within this, instead of running
/// (or waiting for a lock) to its end.
const CLIENT_CHECK_MS: u64 = 5_000;

/// What one [`Client::reindex_bloated`] call did.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let done = client.reindex_bloated(std::time::Duration::from_secs(60)).await?;
/// for index in &done.rebuilt {
///     println!("{}: {} -> {} bytes", index.name, index.bytes_before, index.bytes_after);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// Indexes rebuilt, the most wasteful first.
    pub rebuilt: Vec<RebuiltIndex>,
    /// Invalid indexes dropped: leftovers of failed concurrent builds.
    pub dropped: Vec<String>,
    /// Bloated indexes not rebuilt this time, and why.
    pub skipped: Vec<SkippedIndex>,
}

/// A bloated index [`Client::reindex_bloated`] left for a later call.
///
/// ```
/// use fetchq_core::{SkippedIndex, Skip};
/// let skipped = SkippedIndex { name: "fetchq_data.mailer__docs_pkey".into(), why: Skip::Yielded };
/// assert_eq!(skipped.why, Skip::Yielded);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedIndex {
    /// Schema-qualified, quoted as in SQL.
    pub name: String,
    /// Why.
    pub why: Skip,
}

/// Why a rebuild was left for later.
///
/// ```
/// assert_ne!(fetchq_core::Skip::LockTimeout, fetchq_core::Skip::Yielded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Skip {
    /// A lock wait lasted longer than the `lock_timeout` (a transaction kept
    /// open on the table, most likely).
    LockTimeout,
    /// Someone waited for the table the rebuild held (the queue was being
    /// dropped or truncated, its counters repaired, a DBA's DDL): the rebuild
    /// cancelled itself for them.
    Yielded,
    /// The deadlock detector chose the rebuild.
    Deadlock,
}

/// One index [`Client::reindex_bloated`] rebuilt.
///
/// ```
/// let index = fetchq_core::RebuiltIndex {
///     name: "fetchq_data.mailer__docs_pkey".into(),
///     bytes_before: 11_829_248,
///     bytes_after: 753_664,
/// };
/// assert!(index.bytes_after < index.bytes_before);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltIndex {
    /// Schema-qualified, quoted as in SQL.
    pub name: String,
    /// Its size before the rebuild.
    pub bytes_before: i64,
    /// Its size after.
    pub bytes_after: i64,
}

impl Client {
    /// Rebuilds, with `REINDEX INDEX CONCURRENTLY`, the primary key of every
    /// queue's documents table that is over [`REINDEX_RATIO`] times its packed
    /// size, after dropping the invalid indexes that failed concurrent builds
    /// left behind. Reads and writes of the queue go on meanwhile. Run by the
    /// worker runtime's maintenance leader.
    ///
    /// It uses two connections of its own: the rebuild's, on which each lock
    /// wait (for example for a transaction that stays open on the table) gives
    /// up after `lock_timeout`, and a watcher's. A rebuild yields, as
    /// autovacuum does, to anyone who waits for its table (a queue drop or
    /// truncate, a counter repair, DDL): it cancels itself. What a rebuild
    /// left for later is in [`Reindexed::skipped`]; its leftover index is
    /// dropped at once if it can be, else by the next call. If the calling
    /// process dies or its link is cut, the server ends the rebuild within
    /// seconds.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on a [transaction-pooling](Self::transaction_pooling)
    /// client (a rebuild needs session settings: call it with a direct
    /// connection); database errors, e.g. a role that does not own the
    /// tables (SQLSTATE `42501`).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let done = client.reindex_bloated(std::time::Duration::from_secs(60)).await?;
    /// println!("{} rebuilt, {} leftovers dropped", done.rebuilt.len(), done.dropped.len());
    /// # Ok(()) }
    /// ```
    pub async fn reindex_bloated(&self, lock_timeout: Duration) -> Result<Reindexed> {
        if self.is_transaction_pooling() {
            return Err(Error::InvalidArgument {
                message:
                    "reindex_bloated needs a session: use a direct or session-pooled connection"
                        .into(),
            });
        }
        // nothing to do, the usual answer: no connections of its own
        let leftovers: Vec<String> = sqlx::query_scalar(sql!("index_leftovers"))
            .fetch_all(self.pool())
            .await?;
        let bloated: Vec<Bloated> = sqlx::query_as(sql!("bloated_indexes"))
            .bind(REINDEX_RATIO)
            .fetch_all(self.pool())
            .await?;
        if leftovers.is_empty() && bloated.is_empty() {
            return Ok(Reindexed::default());
        }
        let options = self.pool().connect_options();
        let mut conn = PgConnection::connect_with(&options).await?;
        let mut watcher = match PgConnection::connect_with(&options).await {
            Ok(w) => w,
            Err(e) => {
                let _ = conn.close().await;
                return Err(e.into());
            }
        };
        let done = reindex_on(&mut conn, &mut watcher, lock_timeout, leftovers, bloated).await;
        let _ = conn.close().await;
        let _ = watcher.close().await;
        done
    }
}

/// A row of `bloated_indexes.sql`: index, table, bytes, packed bytes.
type Bloated = (String, String, i64, i64);

async fn reindex_on(
    conn: &mut PgConnection,
    watcher: &mut PgConnection,
    lock_timeout: Duration,
    leftovers: Vec<String>,
    bloated: Vec<Bloated>,
) -> Result<Reindexed> {
    let ms = lock_timeout.as_millis().clamp(1, i32::MAX as u128);
    let lock_timeout = format!("{ms}ms");
    session(conn, LEFTOVER_LOCK_TIMEOUT).await?;
    let set = format!("SET client_connection_check_interval = {CLIENT_CHECK_MS}");
    match conn.execute(set.as_str()).await {
        Ok(_) => {}
        // before PostgreSQL 14: a dead client's rebuild runs to its end
        Err(e) if has_sqlstate(&e, "42704") => {}
        Err(e) => return Err(e.into()),
    }
    let mut done = Reindexed::default();
    drop_leftovers(conn, leftovers, &mut done).await?;
    session(conn, &lock_timeout).await?;
    let pid: i32 = sqlx::query_scalar(sql!("backend_pid"))
        .fetch_one(&mut *conn)
        .await?;
    for (index, table, bytes_before, _packed) in bloated {
        let why = match rebuild(conn, watcher, pid, &index, &table).await {
            Ok(()) => {
                let bytes_after: Option<i64> = sqlx::query_scalar(sql!("index_size"))
                    .bind(index.clone())
                    .fetch_one(&mut *conn)
                    .await?;
                if let Some(bytes_after) = bytes_after {
                    done.rebuilt.push(RebuiltIndex {
                        name: index,
                        bytes_before,
                        bytes_after,
                    });
                }
                continue;
            }
            // the queue was dropped since the list was read
            Err(e) if is_missing_table(&e) => continue,
            Err(e) if has_sqlstate(&e, "55P03") => Skip::LockTimeout,
            Err(e) if has_sqlstate(&e, "57014") => Skip::Yielded,
            Err(e) if has_sqlstate(&e, "40P01") => Skip::Deadlock,
            Err(e) => return Err(e.into()),
        };
        done.skipped.push(SkippedIndex { name: index, why });
        // its leftover, unless what stopped it still holds the table
        session(conn, LEFTOVER_LOCK_TIMEOUT).await?;
        let leftovers = sqlx::query_scalar(sql!("index_leftovers"))
            .fetch_all(&mut *conn)
            .await?;
        drop_leftovers(conn, leftovers, &mut done).await?;
        session(conn, &lock_timeout).await?;
    }
    Ok(done)
}

/// The rebuild's session settings, with this lock timeout.
async fn session(conn: &mut PgConnection, lock_timeout: &str) -> Result<()> {
    sqlx::query(sql!("rebuild_session"))
        .bind(lock_timeout.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Drops these invalid indexes (from `index_leftovers.sql`): the leftovers
/// of failed builds. One whose table is held (55P03) is left for next time.
async fn drop_leftovers(
    conn: &mut PgConnection,
    leftovers: Vec<String>,
    done: &mut Reindexed,
) -> Result<()> {
    for index in leftovers {
        // a catalog name quoted by format('%I.%I'); DDL cannot take a bind
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {index}");
        match conn.execute(drop.as_str()).await {
            Ok(_) => done.dropped.push(index),
            Err(e) if has_sqlstate(&e, "55P03") || is_missing_table(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One REINDEX INDEX CONCURRENTLY on `conn` (server process `pid`), which
/// cancels itself (57014) when someone waits for its lock on `table`.
async fn rebuild(
    conn: &mut PgConnection,
    watcher: &mut PgConnection,
    pid: i32,
    index: &str,
    table: &str,
) -> std::result::Result<(), sqlx::Error> {
    let statement = format!("REINDEX INDEX CONCURRENTLY {index}");
    let running = conn.execute(statement.as_str());
    tokio::pin!(running);
    let mut cancelled = false;
    loop {
        tokio::select! {
            done = &mut running => return done.map(|_| ()),
            _ = tokio::time::sleep(YIELD_CHECK), if !cancelled => {
                let waited: bool = sqlx::query_scalar(sql!("rebuild_blocks"))
                    .bind(pid)
                    .bind(table.to_owned())
                    .fetch_one(&mut *watcher)
                    .await?;
                if waited {
                    sqlx::query(sql!("cancel_backend"))
                        .bind(pid)
                        .execute(&mut *watcher)
                        .await?;
                    cancelled = true;
                }
            }
        }
    }
}
