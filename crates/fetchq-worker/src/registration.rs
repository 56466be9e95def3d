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
fn host_name() -> String {
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
        if trust_until.is_some_and(|t| sent + tick >= t) && *tx.borrow() != Gate::Closed {
            let cancelled = set(&tx, &registry, Gate::Closed);
            tracing::warn!(
                cancelled,
                ?rescue_after,
                "no renewal of this worker's registration got through for half of rescue_after: running handlers are cancelled and picking waits, since maintenance may release this worker's leases"
            );
        }
        // a call that hangs (a cut link) must not keep the gate open past
        // its time: while trusted it is given up a tick before the trust
        // ends; once not, it may take up to rescue_after
        let give_up = match trust_until {
            Some(t) if *tx.borrow() != Gate::Closed => t.checked_sub(tick).unwrap_or(t),
            _ => sent + rescue_after.max(Duration::from_secs(1)),
        };
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
        match answer {
            Some(Ok(Some(o))) => {
                trouble.ok();
                if owner != Some(o) {
                    tracing::debug!(owner = o, "registered");
                }
                owner = Some(o);
                trust_until = Some(sent + half);
                if *tx.borrow() != Gate::Owner(o) {
                    set(&tx, &registry, Gate::Owner(o));
                }
            }
            Some(Ok(None)) => {
                // maintenance found the registration lapsed and released its
                // leases: they may run elsewhere now
                let cancelled = set(&tx, &registry, Gate::Closed);
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
            }
        }
        if trust_until.is_some_and(|t| Instant::now() + tick >= t) && *tx.borrow() != Gate::Closed {
            // fenced at the top of the next round, before anything waits
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => break,
        }
    }
    if let Some(o) = owner {
        let gone = tokio::time::timeout(DEREGISTER_WAIT, client.worker_deregister(o)).await;
        if !matches!(gone, Ok(Ok(_))) {
            tracing::debug!(
                owner = o,
                "could not remove the registration: maintenance removes it once it lapses"
            );
        }
    }
}
