//! The process's registration (schema 21): while it is renewed, this
//! process's leases are its own; once it lapses for `rescue_after`,
//! maintenance (in any process) releases them at once, so a crashed
//! process's documents run elsewhere in seconds instead of when each lease
//! runs out.
//!
//! The safety rule: the database waits the whole `rescue_after` from when it
//! received the last renewal; this process cancels its running handlers and
//! stops picking once it has gone half of `rescue_after` (on its own clock,
//! from before it sent the last renewal that got through) without a renewal.
//! A renewal that finds the registration gone (maintenance released it)
//! cancels them at once and registers anew, with a new owner.
//!
//! The gate of the lease registry is the one place that decides which leases
//! may run: a lease picked under an owner no longer trusted is refused there,
//! even when its pick was already in flight.

use std::time::Duration;

use fetchq_core::Client;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::{Gate, Registry};
use crate::trouble::{Incidents, Trouble, is_older_schema};

/// How long giving back the documents of handlers cancelled by a lapse of
/// trust waits for those handlers to end.
const GIVE_BACK_WAIT: Duration = Duration::from_secs(10);

/// How long a deregistration at shutdown may take.
const DEREGISTER_WAIT: Duration = Duration::from_millis(400);

/// How long to wait before looking again for the registration functions of
/// a schema older than 21 (another process may migrate it).
const SCHEMA_RECHECK: Duration = Duration::from_secs(60);

/// How often to renew, given `rescue_after`.
pub(crate) fn tick_for(rescue_after: Duration) -> Duration {
    (rescue_after / 6).clamp(Duration::from_millis(20), Duration::from_secs(5))
}

/// What the pools read before each pick: pick with this owner, without one,
/// or not now.
#[derive(Debug, Clone)]
pub(crate) struct Owner(watch::Receiver<Gate>);

impl Owner {
    /// `None`: do not pick now (not registered, or not trusted);
    /// `Some(owner)` for the pick's options.
    /// Marks the gate seen: [`changed`](Self::changed) then waits for the
    /// next change.
    pub(crate) fn for_pick(&mut self) -> Option<Option<i64>> {
        match *self.0.borrow_and_update() {
            Gate::Open => Some(None),
            Gate::Owner(owner) => Some(Some(owner)),
            Gate::Closed => None,
        }
    }

    /// Waits until the gate changes (forever once nobody can change it).
    pub(crate) async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The gate and its watchers, before the runtime starts.
pub(crate) fn gate(enabled: bool, registry: &Registry) -> (watch::Sender<Gate>, Owner) {
    let gate = if enabled { Gate::Closed } else { Gate::Open };
    registry.set_gate(gate);
    let (tx, rx) = watch::channel(gate);
    (tx, Owner(rx))
}

/// Sets the gate of the registry and of the pools, in that order (a pool
/// that sees it open finds the registry admitting its leases).
fn set(tx: &watch::Sender<Gate>, registry: &Registry, gate: Gate) -> usize {
    let cancelled = registry.set_gate(gate);
    tx.send_replace(gate);
    cancelled
}

/// `host`, as the kernel names it.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Runs until `stop` fires, then removes the registration (the pools and the
/// completer have stopped by then: nothing of this process is leased).
pub(crate) async fn run(
    client: Client,
    registry: Registry,
    tx: watch::Sender<Gate>,
    rescue_after: Duration,
    stop: CancellationToken,
    hard: CancellationToken,
    incidents: Incidents,
) {
    let mut trouble = Trouble::new("renewing the worker registration", &incidents);
    let tick = tick_for(rescue_after);
    let half = rescue_after / 2;
    let host = host_name();
    let pid = std::process::id();
    let mut owner: Option<i64> = None;
    // when this process stops trusting its registration: half of
    // rescue_after after the send of the last renewal that got through
    let mut trust_until: Option<Instant> = None;
    loop {
        let sent = Instant::now();
        let trusted = *tx.borrow() != Gate::Closed;
        if trusted && trust_until.is_some_and(|t| sent >= t) {
            let cancelled = set(&tx, &registry, Gate::Closed);
            tracing::warn!(
                cancelled,
                ?rescue_after,
                "no renewal of this worker's registration got through for half of rescue_after: running handlers are cancelled and picking waits, since maintenance may release this worker's leases"
            );
            continue;
        }
        // one attempt takes at most a tick (at least a second), so that a
        // call hanging on a dead connection leaves time for another on a
        // fresh one; while trusted, none waits past the end of the trust
        let mut give_up = sent + tick.max(Duration::from_secs(1));
        if let Some(t) = trust_until.filter(|_| trusted) {
            give_up = give_up.min(t);
        }
        let call = async {
            match owner {
                None => client
                    .worker_register(&host, pid, rescue_after)
                    .await
                    .map(Some),
                Some(o) => client
                    .worker_heartbeat(o)
                    .await
                    .map(|kept| kept.then_some(o)),
            }
        };
        let answer = tokio::select! {
            a = call => Some(a),
            () = tokio::time::sleep_until(give_up) => None,
            _ = stop.cancelled() => break,
        };
        // after a success the next renewal is a tick away; after a failure
        // it is retried sooner (a fifth of a tick), so that one failed
        // renewal in an outage shorter than a third of rescue_after cancels
        // nothing
        let mut wait = (tick / 5).max(Duration::from_millis(20));
        match answer {
            Some(Ok(Some(o))) => {
                trouble.ok();
                let renewed = owner == Some(o);
                if !renewed {
                    tracing::debug!(owner = o, "registered");
                    // leases cancelled under another owner were released
                    // with its registration
                    registry.take_fenced();
                }
                owner = Some(o);
                trust_until = Some(sent + half);
                if *tx.borrow() != Gate::Owner(o) {
                    set(&tx, &registry, Gate::Owner(o));
                    if renewed {
                        // the same registration after a close: the documents
                        // whose handlers it cancelled are still leased here
                        // and nothing runs them; give them back now
                        give_back(&client, &registry, registry.take_fenced());
                    }
                }
                wait = tick;
            }
            Some(Ok(None)) => {
                // maintenance found the registration lapsed and released its
                // leases: they may run elsewhere now
                let cancelled = set(&tx, &registry, Gate::Closed);
                registry.take_fenced();
                tracing::warn!(
                    cancelled,
                    "this worker's registration had lapsed and its leases were released: running handlers are cancelled and their results discarded; registering again"
                );
                owner = None;
                trust_until = None;
                continue;
            }
            Some(Err(e)) if is_older_schema(&e) => {
                // the schema is older than 21: leases are rescued when they
                // run out, as before
                trouble.ok();
                if *tx.borrow() != Gate::Open {
                    tracing::warn!(error = %e,
                        "the fetchq schema is older than 21 (no worker registrations): a crashed worker's documents wait for their lease");
                    set(&tx, &registry, Gate::Open);
                }
                tokio::select! {
                    () = tokio::time::sleep(SCHEMA_RECHECK) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            Some(Err(e)) => {
                trouble.failed(&e);
            }
            None => {
                trouble.failed(&"the database did not answer in time");
                wait = Duration::ZERO;
            }
        }
        // wake at the end of the trust to close the gate on time
        let mut until = Instant::now() + wait;
        if let Some(t) = trust_until.filter(|_| *tx.borrow() != Gate::Closed) {
            until = until.min(t);
        }
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            _ = stop.cancelled() => break,
        }
    }
    // a forced shutdown, or one out of time, leaves leases held: the
    // registration stays, so maintenance releases them after rescue_after
    if let Some(o) = owner.filter(|_| !hard.is_cancelled() && registry.len() == 0) {
        let gone = tokio::time::timeout(DEREGISTER_WAIT, client.worker_deregister(o)).await;
        if !matches!(gone, Ok(Ok(_))) {
            tracing::debug!(
                owner = o,
                "could not remove the registration: maintenance removes it once it lapses"
            );
        }
    }
}

/// Gives `leases` back (due again for anyone, attempts not burned), in the
/// background; their tokens fence it. Those it cannot give back return when
/// their lease runs out.
fn give_back(client: &Client, registry: &Registry, leases: Vec<fetchq_core::Lease>) {
    if leases.is_empty() {
        return;
    }
    let (client, registry) = (client.clone(), registry.clone());
    tokio::spawn(async move {
        // not before their cancelled handlers have ended (or been aborted)
        let waited = Instant::now();
        while registry.holds_any(&leases) && waited.elapsed() < GIVE_BACK_WAIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if registry.holds_any(&leases) {
            tracing::warn!(
                "cancelled handlers did not end: their documents return after their lease"
            );
            return;
        }
        let mut by_queue: std::collections::HashMap<String, Vec<fetchq_core::Lease>> =
            std::collections::HashMap::new();
        for lease in leases {
            by_queue.entry(lease.queue.clone()).or_default().push(lease);
        }
        for (queue, leases) in by_queue {
            match client.release(&queue, &leases).await {
                Ok(released) => tracing::info!(queue = %queue, released = released.len(),
                    "gave back the documents whose handlers a lapse of trust cancelled"),
                Err(e) => tracing::warn!(queue = %queue, error = %e,
                    "could not give back documents whose handlers were cancelled: they return after their lease"),
            }
        }
    });
}
