//! Worker registrations (schema 21, see `sql/migrations/0021_workers.sql`):
//! a registered process's lease tokens carry its owner, and maintenance
//! releases them at once when the registration lapses, instead of when each
//! lease runs out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::types::Uuid;

use crate::error::{Error, Result};
use crate::{Client, sql};

/// The longest `rescue_after` the engine accepts.
pub const MAX_RESCUE_AFTER: Duration = Duration::from_secs(86_400);

/// A registered worker process, as [`Client::worker_list`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// The owner its lease tokens carry.
    pub owner: i64,
    /// The host it said it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i32,
    /// How long its registration may go unrenewed before its leases are released.
    pub rescue_after: Duration,
    /// When it registered.
    pub registered_at: DateTime<Utc>,
    /// When it last renewed its registration.
    pub seen_at: DateTime<Utc>,
    /// Past its `rescue_after`: the next maintenance round releases its leases.
    pub lost: bool,
}

/// What [`Client::mnt_rescue_workers`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerRescue {
    /// Lapsed registrations removed.
    pub workers: i32,
    /// Their active documents released (retried, or dead past max attempts).
    pub released: i32,
}

/// The owner a lease token carries (its first 8 bytes), as
/// `fetchq.lease_owner` reads it. Meaningful only for tokens of a pick made
/// with [`PickOptions::owner`](crate::PickOptions::owner).
///
/// ```
/// let token = sqlx::types::Uuid::from_u64_pair(0x0000_0000_0000_002a, 7);
/// assert_eq!(fetchq_core::lease_owner(&token), 42);
/// ```
pub fn lease_owner(token: &Uuid) -> i64 {
    i64::from_be_bytes(token.as_u64_pair().0.to_be_bytes())
}

fn check_rescue_after(rescue_after: Duration) -> Result<()> {
    if rescue_after < Duration::from_micros(1) || rescue_after > MAX_RESCUE_AFTER {
        return Err(Error::InvalidArgument {
            message: format!(
                "rescue_after must be more than 0 and at most 1 day, got {rescue_after:?}"
            ),
        });
    }
    Ok(())
}

impl Client {
    /// Registers a worker process; returns its owner, for
    /// [`PickOptions::owner`](crate::PickOptions::owner). The runtime does
    /// this itself (see `Runtime::rescue_after` in fetchq-worker).
    ///
    /// Renew it with [`worker_heartbeat`](Self::worker_heartbeat) well within
    /// `rescue_after`: once it has gone that long unrenewed, maintenance
    /// ([`mnt_rescue_workers`](Self::mnt_rescue_workers)) releases the
    /// owner's leases, so stop every handler of those leases before then.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a `rescue_after` of 0 or over a day, or
    /// a host name over 255 characters; database errors (a schema below 21
    /// has no registrations: an undefined function).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let owner = client.worker_register("crawler-7", 4242, Duration::from_secs(30)).await?;
    /// let opts = fetchq_core::PickOptions::new().owner(Some(owner));
    /// let docs = client.pick("pages", &opts).await?;
    /// assert!(client.worker_heartbeat(owner).await?);
    /// # let _ = docs;
    /// # Ok(()) }
    /// ```
    pub async fn worker_register(
        &self,
        host: &str,
        pid: u32,
        rescue_after: Duration,
    ) -> Result<i64> {
        check_rescue_after(rescue_after)?;
        if host.chars().count() > 255 {
            return Err(Error::InvalidArgument {
                message: format!(
                    "host must be at most 255 characters, got {}",
                    host.chars().count()
                ),
            });
        }
        let owner: i64 = sqlx::query_scalar(sql!("worker_register"))
            .bind(host)
            .bind(i32::try_from(pid).unwrap_or(i32::MAX))
            .bind(rescue_after)
            .fetch_one(self.exec())
            .await?;
        Ok(owner)
    }

    /// Renews a registration. `false`: it is gone (maintenance found it
    /// lapsed and released its leases, or it never existed): register again.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, owner: i64) -> fetchq_core::Result<()> {
    /// if !client.worker_heartbeat(owner).await? {
    ///     // every lease of `owner` was released: stop its handlers
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn worker_heartbeat(&self, owner: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(sql!("worker_heartbeat"))
            .bind(owner)
            .fetch_one(self.exec())
            .await?)
    }

    /// Removes a registration (a clean stop, once its leases are resolved or
    /// given back). Returns whether it was there.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client, owner: i64) -> fetchq_core::Result<()> {
    /// client.worker_deregister(owner).await?;
    /// # Ok(()) }
    /// ```
    pub async fn worker_deregister(&self, owner: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(sql!("worker_deregister"))
            .bind(owner)
            .fetch_one(self.exec())
            .await?)
    }

    /// The registered workers, oldest first.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// for w in client.worker_list().await? {
    ///     println!("{} pid {} seen {}{}", w.host, w.pid, w.seen_at, if w.lost { " (lost)" } else { "" });
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn worker_list(&self) -> Result<Vec<WorkerInfo>> {
        let rows = sqlx::query(sql!("worker_list"))
            .fetch_all(self.exec())
            .await?;
        rows.iter()
            .map(|r| {
                let secs: f64 = r.try_get(3)?;
                Ok(WorkerInfo {
                    owner: r.try_get(0)?,
                    host: r.try_get(1)?,
                    pid: r.try_get(2)?,
                    rescue_after: Duration::try_from_secs_f64(secs).unwrap_or_default(),
                    registered_at: r.try_get(4)?,
                    seen_at: r.try_get(5)?,
                    lost: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Releases the leases of every worker whose registration lapsed (in all
    /// queues, through the orphan rescue: retried, or dead past max
    /// attempts) and removes those registrations. The runtime's maintenance
    /// leader runs it every round.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let rescue = client.mnt_rescue_workers().await?;
    /// println!("{} workers lost, {} documents released", rescue.workers, rescue.released);
    /// # Ok(()) }
    /// ```
    pub async fn mnt_rescue_workers(&self) -> Result<WorkerRescue> {
        let row = sqlx::query(sql!("mnt_rescue_workers"))
            .fetch_one(self.exec())
            .await?;
        Ok(WorkerRescue {
            workers: row.try_get(0)?,
            released: row.try_get(1)?,
        })
    }
}
