//! The maintenance leader's VACUUM of busy tables
//! ([`Client::vacuum_hot_tables`]) and rebuilds of bloated primary keys
//! ([`Client::reindex_bloated`]), each in a task of its own: on a big queue
//! one VACUUM takes seconds (7 s for a queue of 100M documents on the
//! benchmark host) and a rebuild minutes, and neither the leader's rounds
//! (lapsed workers' leases, orphans, cron ticks) nor each other wait for
//! them. At most one of each runs at a time; both are aborted when the leader
//! stops leading (the server then ends a rebuild within seconds, and the next
//! leader drops its leftover).

use std::time::Duration;

use fetchq_core::{Client, Reindexed, Skip};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::trouble::Trouble;

/// How often the leader looks for tables to vacuum.
const VACUUM_EVERY: Duration = Duration::from_secs(5);

/// How often the leader looks for bloated keys (a catalog query), and how
/// long it waits after a rebuild timed out on a lock (a transaction held open
/// on the table makes every attempt fail, each after building a whole index).
const REINDEX_EVERY: Duration = Duration::from_secs(60);
const REINDEX_AFTER_FAILURE: Duration = Duration::from_secs(600);

/// How long the leader leaves keys alone after a rebuild that saved less
/// than a quarter of a key: the bloat estimate is off for it, and rebuilding
/// it every minute would only cost I/O.
const REINDEX_AFTER_MISESTIMATE: Duration = Duration::from_secs(86_400);

/// How long a rebuild waits for a lock (for transactions open on the table).
const REINDEX_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The leader's vacuum and rebuilds: for each, none running or the one
/// running.
pub(crate) struct Vacuum {
    client: Client,
    vacuuming: Option<JoinHandle<fetchq_core::Result<Vec<String>>>>,
    last: Instant,
    /// Off once the role turned out not to own the tables.
    enabled: bool,
    rebuilding: Option<JoinHandle<fetchq_core::Result<Reindexed>>>,
    /// When to look for bloated keys next; `None`: never (turned off, a
    /// transaction pooler, or not the tables' owner).
    reindex_at: Option<Instant>,
}

impl Vacuum {
    /// `reindex`: whether to rebuild bloated keys (the first look is
    /// `VACUUM_EVERY` after leading starts).
    pub(crate) fn new(client: Client, reindex: bool) -> Self {
        let reindex_at = if !reindex {
            None
        } else if client.is_transaction_pooling() {
            tracing::info!(
                "rebuilding bloated keys needs a session: off through a transaction pooler"
            );
            None
        } else {
            Some(Instant::now() + VACUUM_EVERY)
        };
        Self {
            client,
            vacuuming: None,
            last: Instant::now(),
            enabled: true,
            rebuilding: None,
            reindex_at,
        }
    }

    /// Collects finished tasks (their failures go to `trouble`) and starts
    /// the next ones that are due.
    pub(crate) async fn round(&mut self, trouble: &mut Trouble) {
        if let Some(running) = self.vacuuming.take_if(|h| h.is_finished()) {
            match running.await {
                Ok(done) => self.vacuumed(done, trouble),
                Err(e) => tracing::warn!(error = %e, "the vacuum task ended abnormally"),
            }
        }
        if let Some(running) = self.rebuilding.take_if(|h| h.is_finished()) {
            match running.await {
                Ok(done) => self.rebuilt(done),
                Err(e) => tracing::warn!(error = %e, "the index rebuild task ended abnormally"),
            }
        }
        if self.enabled && self.vacuuming.is_none() && self.last.elapsed() >= VACUUM_EVERY {
            self.last = Instant::now();
            let client = self.client.clone();
            self.vacuuming = Some(tokio::spawn(
                async move { client.vacuum_hot_tables().await },
            ));
        }
        let reindex_due = self.reindex_at.is_some_and(|at| Instant::now() >= at);
        if reindex_due && self.rebuilding.is_none() {
            self.reindex_at = Some(Instant::now() + REINDEX_EVERY);
            let client = self.client.clone();
            self.rebuilding = Some(tokio::spawn(async move {
                client.reindex_bloated(REINDEX_LOCK_TIMEOUT).await
            }));
        }
    }

    fn vacuumed(&mut self, done: fetchq_core::Result<Vec<String>>, trouble: &mut Trouble) {
        match done {
            Ok(tables) if !tables.is_empty() => tracing::debug!(?tables, "vacuumed"),
            Ok(_) => {}
            Err(e) if not_owner(&e) => {
                // not the tables' owner: leave it to autovacuum
                tracing::warn!(error = %e, "cannot vacuum fetchq tables; relying on autovacuum");
                self.enabled = false;
            }
            Err(e) => {
                trouble.failed(&e);
            }
        }
    }

    fn rebuilt(&mut self, done: fetchq_core::Result<Reindexed>) {
        let done = match done {
            Ok(done) => done,
            Err(e) if not_owner(&e) => {
                tracing::warn!(error = %e, "cannot rebuild fetchq indexes: not their owner");
                self.reindex_at = None;
                return;
            }
            Err(e) => {
                // a rebuild is an optimization: its failure is no outage of
                // maintenance, and it is tried again later
                tracing::warn!(error = %e, "rebuilding bloated keys failed; trying again in 10 minutes");
                self.reindex_at = Some(Instant::now() + REINDEX_AFTER_FAILURE);
                return;
            }
        };
        for index in &done.rebuilt {
            tracing::info!(
                index = %index.name,
                bytes_before = index.bytes_before,
                bytes_after = index.bytes_after,
                "rebuilt a bloated key"
            );
            if index.bytes_after.saturating_mul(4) > index.bytes_before.saturating_mul(3) {
                tracing::warn!(index = %index.name,
                    "rebuilding this key saved less than a quarter of it: no rebuilds for a day");
                self.reindex_later(REINDEX_AFTER_MISESTIMATE);
            }
        }
        if !done.dropped.is_empty() {
            tracing::info!(indexes = ?done.dropped, "dropped the leftovers of failed index builds");
        }
        for skipped in &done.skipped {
            tracing::info!(index = %skipped.name, why = ?skipped.why, "a bloated key's rebuild is left for later");
            if skipped.why == Skip::LockTimeout {
                self.reindex_later(REINDEX_AFTER_FAILURE);
            }
        }
    }
}

impl Vacuum {
    /// Puts the next look for bloated keys off by `delay` at least.
    fn reindex_later(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.reindex_at = self.reindex_at.map(|next| next.max(at));
    }
}

/// SQLSTATE 42501: the role may not VACUUM or REINDEX the tables.
fn not_owner(e: &fetchq_core::Error) -> bool {
    matches!(e, fetchq_core::Error::Database(e)
        if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501"))
}

impl Drop for Vacuum {
    fn drop(&mut self) {
        if let Some(running) = self.vacuuming.take() {
            running.abort();
        }
        if let Some(running) = self.rebuilding.take() {
            running.abort();
        }
    }
}
