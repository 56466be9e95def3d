//! Counters per handler, readable while the runtime runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Counters of one handler in this process.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) picked: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) rescheduled: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) killed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) migrated: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) lease_lost: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Pick round trips.
    pub(crate) picks: AtomicU64,
    /// Documents picked and not handed over for writing yet.
    pub(crate) in_flight: AtomicU64,
    /// The handler's queue (set when its pool starts).
    pub(crate) queue: OnceLock<String>,
    /// Its histograms, when metrics are exported.
    pub(crate) histograms: OnceLock<crate::telemetry::HandlerHistograms>,
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A snapshot of one handler's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Documents picked.
    pub picked: u64,
    /// Completed.
    pub completed: u64,
    /// Rescheduled.
    pub rescheduled: u64,
    /// Rejected (by the handler, an error, a panic or a timeout).
    pub rejected: u64,
    /// Killed.
    pub killed: u64,
    /// Dropped.
    pub dropped: u64,
    /// Moved to another version.
    pub migrated: u64,
    /// Handler errors and panics (each also counts as rejected).
    pub failed: u64,
    /// Runs cancelled for exceeding max runtime (each also counts as rejected).
    pub timed_out: u64,
    /// Results discarded because the lease was lost.
    pub lease_lost: u64,
    /// Documents given back at shutdown.
    pub released: u64,
    /// Outcomes the database refused for good (a payload it cannot store or
    /// that is over the queue's limit, a version out of range, a dropped
    /// queue...): the document was rejected instead, or left to expire.
    pub refused: u64,
}

/// Live counters of every handler of a runtime; cheap to clone.
///
/// ```no_run
/// # async fn run(runtime: fetchq_worker::Runtime) {
/// let stats = runtime.stats();
/// tokio::spawn(runtime.run());
/// for (handler, s) in stats.snapshot() {
///     println!("{handler}: {} picked, {} completed", s.picked, s.completed);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stats {
    handlers: Arc<Mutex<BTreeMap<String, Arc<Counters>>>>,
}

impl Stats {
    pub(crate) fn handler(&self, name: &str) -> Arc<Counters> {
        let mut map = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Every handler's counters, by name.
    #[cfg_attr(not(any(feature = "metrics", feature = "otlp")), allow(dead_code))]
    pub(crate) fn handlers(&self) -> Vec<(String, Arc<Counters>)> {
        let map = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The counters of every handler, by name.
    pub fn snapshot(&self) -> BTreeMap<String, HandlerStats> {
        let map = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(name, c)| {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let stats = HandlerStats {
                    picked: get(&c.picked),
                    completed: get(&c.completed),
                    rescheduled: get(&c.rescheduled),
                    rejected: get(&c.rejected),
                    killed: get(&c.killed),
                    dropped: get(&c.dropped),
                    migrated: get(&c.migrated),
                    failed: get(&c.failed),
                    timed_out: get(&c.timed_out),
                    lease_lost: get(&c.lease_lost),
                    released: get(&c.released),
                    refused: get(&c.refused),
                };
                (name.clone(), stats)
            })
            .collect()
    }

    /// The sum over every handler.
    pub fn total(&self) -> HandlerStats {
        self.snapshot()
            .values()
            .fold(HandlerStats::default(), |a, s| HandlerStats {
                picked: a.picked + s.picked,
                completed: a.completed + s.completed,
                rescheduled: a.rescheduled + s.rescheduled,
                rejected: a.rejected + s.rejected,
                killed: a.killed + s.killed,
                dropped: a.dropped + s.dropped,
                migrated: a.migrated + s.migrated,
                failed: a.failed + s.failed,
                timed_out: a.timed_out + s.timed_out,
                lease_lost: a.lease_lost + s.lease_lost,
                released: a.released + s.released,
                refused: a.refused + s.refused,
            })
    }
}
