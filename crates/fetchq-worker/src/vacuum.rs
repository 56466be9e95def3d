//! The maintenance leader's VACUUM of busy tables
//! ([`Client::vacuum_hot_tables`]), in a task of its own: on a big queue one
//! VACUUM takes seconds (7 s for a queue of 100M documents on the benchmark
//! host), and the leader's rounds (lapsed workers' leases, orphans, cron
//! ticks) do not wait for it. At most one runs at a time; it is aborted when
//! the leader stops leading.

use std::time::Duration;

use fetchq_core::Client;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::trouble::Trouble;

/// How often the leader looks for tables to vacuum.
const VACUUM_EVERY: Duration = Duration::from_secs(5);

/// The leader's vacuum: none running, or the one running.
pub(crate) struct Vacuum {
    client: Client,
    running: Option<JoinHandle<fetchq_core::Result<Vec<String>>>>,
    last: Instant,
    /// Off once the role turned out not to own the tables.
    enabled: bool,
}

impl Vacuum {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            running: None,
            last: Instant::now(),
            enabled: true,
        }
    }

    /// Collects a finished run (its failure goes to `trouble`) and starts the
    /// next one when none runs and the last started `VACUUM_EVERY` ago.
    pub(crate) async fn round(&mut self, trouble: &mut Trouble) {
        if let Some(running) = self.running.take_if(|h| h.is_finished()) {
            match running.await {
                Ok(Ok(tables)) if !tables.is_empty() => tracing::debug!(?tables, "vacuumed"),
                Ok(Ok(_)) => {}
                Ok(Err(fetchq_core::Error::Database(e)))
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501") =>
                {
                    // not the tables' owner: leave it to autovacuum
                    tracing::warn!(error = %e, "cannot vacuum fetchq tables; relying on autovacuum");
                    self.enabled = false;
                }
                Ok(Err(e)) => {
                    trouble.failed(&e);
                }
                Err(e) => tracing::warn!(error = %e, "the vacuum task ended abnormally"),
            }
        }
        if self.enabled && self.running.is_none() && self.last.elapsed() >= VACUUM_EVERY {
            self.last = Instant::now();
            let client = self.client.clone();
            self.running = Some(tokio::spawn(
                async move { client.vacuum_hot_tables().await },
            ));
        }
    }
}

impl Drop for Vacuum {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}
