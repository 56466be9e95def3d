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

/// Entries by queue, then by subject: a lookup borrows the lease's names
/// instead of allocating a key.
type Map = HashMap<String, HashMap<String, Entry>>;

/// Which new leases may start: the process's registration (schema 21) makes
/// its leases releasable by maintenance once it lapses, so a lease made under
/// a registration this process no longer trusts must not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Gate {
    /// No registration (turned off, or a schema without them): every lease.
    #[default]
    Open,
    /// Leases whose token carries this owner.
    Owner(i64),
    /// None: the registration lapsed, or is being renewed after an outage.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    docs: Map,
    gate: Gate,
    /// The leases whose handlers the last close cancelled: given back if the
    /// same registration is renewed after all (see `take_fenced`).
    fenced: Vec<Lease>,
}

/// Leases held by this process, one per document.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<Inner>>,
}

/// The entry of this document, whatever its lease.
fn get<'a>(map: &'a Map, lease: &Lease) -> Option<&'a Entry> {
    map.get(&lease.queue)?.get(&lease.subject)
}

fn get_mut<'a>(map: &'a mut Map, lease: &Lease) -> Option<&'a mut Entry> {
    map.get_mut(&lease.queue)?.get_mut(&lease.subject)
}

/// The lease of `e` is gone, or about to be: a running handler is
/// cancelled and the loss counted (true); an outcome waiting in the
/// completer gets its lease marked run out, so the completer stops retrying
/// it and decides (and counts) whether it was written.
fn lose_entry(e: &mut Entry) -> bool {
    match e.state {
        State::Submitted => {
            e.expires = e.expires.min(Instant::now());
            false
        }
        State::Running => {
            e.state = State::Lost;
            e.cancel.cancel();
            crate::stats::bump(&e.counters.lease_lost, 1);
            true
        }
        State::Lost => false,
    }
}

/// The registry's lock, seen as its map of entries.
struct MapGuard<'a>(std::sync::MutexGuard<'a, Inner>);

impl std::ops::Deref for MapGuard<'_> {
    type Target = Map;
    fn deref(&self) -> &Map {
        &self.0.docs
    }
}

impl std::ops::DerefMut for MapGuard<'_> {
    fn deref_mut(&mut self) -> &mut Map {
        &mut self.0.docs
    }
}

/// Forgets this document's entry.
fn forget(map: &mut Map, lease: &Lease) {
    if let Some(docs) = map.get_mut(&lease.queue) {
        docs.remove(&lease.subject);
    }
}

impl Registry {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MapGuard<'_> {
        MapGuard(self.inner())
    }

    /// Holds a freshly picked lease; false (nothing held) when the gate
    /// refuses it: its pick was made under a registration no longer trusted.
    pub(crate) fn insert(&self, entry: Entry) -> bool {
        let mut inner = self.inner();
        let allowed = match inner.gate {
            Gate::Open => true,
            Gate::Owner(owner) => fetchq_core::lease_owner(&entry.lease.token) == owner,
            Gate::Closed => false,
        };
        if !allowed {
            return false;
        }
        let map = &mut inner.docs;
        let docs = match map.get_mut(&entry.lease.queue) {
            Some(docs) => docs,
            None => map.entry(entry.lease.queue.clone()).or_default(),
        };
        docs.insert(entry.lease.subject.clone(), entry);
        true
    }

    /// Sets which new leases may start. Closing it cancels every running
    /// handler, in the same critical section as the change, so that no lease
    /// slips in between (outcomes waiting to be written are left to the
    /// completer: the database refuses them if the lease is gone). Opening it
    /// to an owner cancels nothing: it opens after a close (nothing runs), or
    /// on a schema that just got registrations (what runs has random tokens,
    /// which maintenance never releases early). Returns how many handlers it
    /// cancelled.
    pub(crate) fn set_gate(&self, gate: Gate) -> usize {
        let mut inner = self.inner();
        inner.gate = gate;
        if gate != Gate::Closed {
            return 0;
        }
        let mut fenced = Vec::new();
        for e in inner.docs.values_mut().flat_map(HashMap::values_mut) {
            if e.state == State::Running && lose_entry(e) {
                fenced.push(e.lease.clone());
            }
        }
        let cancelled = fenced.len();
        inner.fenced.extend(fenced);
        cancelled
    }

    /// The leases of the handlers cancelled by closing the gate, since the
    /// last call: still this process's if its registration is renewed after
    /// all, to be given back then (nothing runs them any more).
    pub(crate) fn take_fenced(&self) -> Vec<Lease> {
        std::mem::take(&mut self.inner().fenced)
    }

    /// Cancels every running handler whose lease runs out (by the local
    /// clock) before `by`: with no heartbeat getting through, the database
    /// hands such a document to another worker once the lease ends there.
    /// Returns how many it cancelled.
    pub(crate) fn lose_expiring(&self, by: Instant) -> usize {
        let mut inner = self.inner();
        let mut cancelled = 0;
        for e in inner.docs.values_mut().flat_map(HashMap::values_mut) {
            if e.expires <= by && e.state == State::Running && lose_entry(e) {
                cancelled += 1;
            }
        }
        cancelled
    }

    /// Marks the handler done; returns false when the lease was already lost.
    pub(crate) fn submit(&self, lease: &Lease) -> bool {
        match get_mut(&mut self.lock(), lease) {
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
        if get(&map, lease).is_some_and(|e| e.lease.token == lease.token) {
            forget(&mut map, lease);
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
        for e in self.lock().values().flat_map(HashMap::values) {
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
        if let Some(e) = get_mut(&mut self.lock(), lease)
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
        match get_mut(&mut map, lease) {
            Some(e) if e.lease.token == lease.token => lose_entry(e),
            _ => false,
        }
    }

    /// The completer found the lease gone (or gave up on it before it ran
    /// out): forgets it, and counts the loss unless already counted. Returns
    /// true when counted here.
    pub(crate) fn discard(&self, lease: &Lease) -> bool {
        let mut map = self.lock();
        match get(&map, lease) {
            Some(e) if e.lease.token == lease.token => {
                let count = e.state != State::Lost;
                if count {
                    crate::stats::bump(&e.counters.lease_lost, 1);
                }
                forget(&mut map, lease);
                count
            }
            _ => false,
        }
    }

    /// Whether the handler of this lease still runs (not submitted, not lost).
    pub(crate) fn is_running(&self, lease: &Lease) -> bool {
        get(&self.lock(), lease)
            .is_some_and(|e| e.lease.token == lease.token && e.state == State::Running)
    }

    /// Whether the lease has run out by the local clock (or is no longer held
    /// here): an outcome still waiting for it is not worth writing any more.
    pub(crate) fn expired(&self, lease: &Lease, now: Instant) -> bool {
        get(&self.lock(), lease).is_none_or(|e| {
            e.lease.token != lease.token || e.state == State::Lost || now >= e.expires
        })
    }

    /// Whether any of `leases` is still held here (its handler not ended).
    pub(crate) fn holds_any(&self, leases: &[Lease]) -> bool {
        let map = self.lock();
        leases
            .iter()
            .any(|l| get(&map, l).is_some_and(|e| e.lease.token == l.token))
    }

    /// How many leases are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sqlx::types::Uuid;

    fn entry(lease: &Lease) -> Entry {
        Entry {
            lease: lease.clone(),
            lease_duration: Duration::from_secs(60),
            expires: Instant::now() + Duration::from_secs(60),
            cancel: CancellationToken::new(),
            state: State::Running,
            submitted_at: None,
            counters: Arc::default(),
        }
    }

    fn lease(queue: &str, subject: &str, token: Uuid) -> Lease {
        Lease {
            queue: queue.into(),
            subject: subject.into(),
            token,
            expires_at: Utc::now(),
        }
    }

    #[test]
    fn documents_of_one_pick_share_a_token_but_not_an_entry() {
        let registry = Registry::default();
        // one pick gives every document it leases the same token
        let token = Uuid::new_v4();
        let (a, b) = (lease("q", "a", token), lease("q", "b", token));
        let other_queue = lease("r", "a", token);
        for l in [&a, &b, &other_queue] {
            registry.insert(entry(l));
        }
        assert_eq!(registry.len(), 3);
        assert!(registry.submit(&a));
        assert!(!registry.is_running(&a) && registry.is_running(&b));
        registry.remove(&a);
        assert!(registry.is_running(&b) && registry.is_running(&other_queue));
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn a_document_picked_again_replaces_its_lost_lease() {
        let registry = Registry::default();
        let old = lease("q", "s1", Uuid::new_v4());
        registry.insert(entry(&old));
        // the heartbeat found the first lease gone: its handler is cancelled
        assert!(registry.lost(&old));
        // the document is picked again by this process while that handler ends
        let new = lease("q", "s1", Uuid::new_v4());
        registry.insert(entry(&new));
        assert_eq!(registry.len(), 1);
        assert!(registry.is_running(&new) && !registry.is_running(&old));
        // the old handler's task cannot forget or settle the new lease
        registry.remove(&old);
        assert!(!registry.discard(&old) && !registry.submit(&old));
        assert!(registry.is_running(&new));
        assert!(registry.expired(&old, Instant::now()));
        assert!(!registry.expired(&new, Instant::now()));
        assert!(registry.submit(&new));
        registry.remove(&new);
        assert_eq!(registry.len(), 0);
    }
}
