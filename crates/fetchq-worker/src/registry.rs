//! The leases this process holds, shared by the pools (which add them), the
//! heartbeat (which extends them) and the completer (which retires them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fetchq_core::Lease;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::Counters;

/// Where a leased document stands in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// The handler runs.
    Running,
    /// The outcome waits in the completer.
    Submitted,
    /// A heartbeat found the lease gone: the result will be discarded.
    Lost,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) lease: Lease,
    pub(crate) lease_duration: Duration,
    /// When the lease runs out by the local clock (conservative).
    pub(crate) expires: Instant,
    pub(crate) cancel: CancellationToken,
    pub(crate) state: State,
    /// When the handler handed its outcome over (state `Submitted`).
    pub(crate) submitted_at: Option<Instant>,
    pub(crate) counters: Arc<Counters>,
}

type Key = (String, String);

/// Leases held by this process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<HashMap<Key, Entry>>>,
}

fn key(lease: &Lease) -> Key {
    (lease.queue.clone(), lease.subject.clone())
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, entry: Entry) {
        self.lock().insert(key(&entry.lease), entry);
    }

    /// Marks the handler done; returns false when the lease was already lost.
    pub(crate) fn submit(&self, lease: &Lease) -> bool {
        match self.lock().get_mut(&key(lease)) {
            Some(e) if e.lease.token == lease.token && e.state == State::Running => {
                e.state = State::Submitted;
                e.submitted_at = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Forgets a lease (resolved, lost or released).
    pub(crate) fn remove(&self, lease: &Lease) {
        let mut map = self.lock();
        if map
            .get(&key(lease))
            .is_some_and(|e| e.lease.token == lease.token)
        {
            map.remove(&key(lease));
        }
    }

    /// Leases to extend now: those past half of their lease, grouped by queue
    /// and lease duration. An outcome that has waited to be written for longer
    /// than one lease is no longer extended: if it cannot be written, its
    /// document returns to the queue as an orphan instead of staying active
    /// with no live handler.
    pub(crate) fn due_for_heartbeat(
        &self,
        now: Instant,
    ) -> HashMap<(String, Duration), Vec<Lease>> {
        let mut due: HashMap<(String, Duration), Vec<Lease>> = HashMap::new();
        for e in self.lock().values() {
            let stale = e.state == State::Submitted
                && e.submitted_at
                    .is_some_and(|at| now.saturating_duration_since(at) > e.lease_duration);
            if e.state != State::Lost
                && !stale
                && e.expires.saturating_duration_since(now) < e.lease_duration / 2
            {
                due.entry((e.lease.queue.clone(), e.lease_duration))
                    .or_default()
                    .push(e.lease.clone());
            }
        }
        due
    }

    /// Records a successful extension.
    pub(crate) fn extended(&self, lease: &Lease, until: Instant) {
        if let Some(e) = self.lock().get_mut(&key(lease))
            && e.lease.token == lease.token
        {
            e.expires = until;
        }
    }

    /// The heartbeat found the lease gone. A running handler is cancelled and
    /// the loss counted (returns true the first time). An outcome waiting in
    /// the completer is left to it: the heartbeat may have raced the write of
    /// that very outcome, so the completer decides (and counts) whether it was
    /// written or lost; its lease is marked run out so it stops retrying.
    pub(crate) fn lost(&self, lease: &Lease) -> bool {
        let mut map = self.lock();
        match map.get_mut(&key(lease)) {
            Some(e) if e.lease.token == lease.token && e.state == State::Submitted => {
                e.expires = Instant::now();
                false
            }
            Some(e) if e.lease.token == lease.token && e.state == State::Running => {
                e.state = State::Lost;
                e.cancel.cancel();
                crate::stats::bump(&e.counters.lease_lost, 1);
                true
            }
            _ => false,
        }
    }

    /// The completer found the lease gone (or gave up on it before it ran
    /// out): forgets it, and counts the loss unless already counted. Returns
    /// true when counted here.
    pub(crate) fn discard(&self, lease: &Lease) -> bool {
        let mut map = self.lock();
        match map.get(&key(lease)) {
            Some(e) if e.lease.token == lease.token => {
                let count = e.state != State::Lost;
                if count {
                    crate::stats::bump(&e.counters.lease_lost, 1);
                }
                map.remove(&key(lease));
                count
            }
            _ => false,
        }
    }

    /// Whether the handler of this lease still runs (not submitted, not lost).
    pub(crate) fn is_running(&self, lease: &Lease) -> bool {
        self.lock()
            .get(&key(lease))
            .is_some_and(|e| e.lease.token == lease.token && e.state == State::Running)
    }

    /// Whether the lease has run out by the local clock (or is no longer held
    /// here): an outcome still waiting for it is not worth writing any more.
    pub(crate) fn expired(&self, lease: &Lease, now: Instant) -> bool {
        self.lock().get(&key(lease)).is_none_or(|e| {
            e.lease.token != lease.token || e.state == State::Lost || now >= e.expires
        })
    }

    /// How many leases are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
