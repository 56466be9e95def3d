//! Keeps the leases of running handlers alive: one batched extension per queue
//! and lease length, for every lease past half of its time. A lease found lost
//! cancels its handler.

use std::time::Duration;

use fetchq_core::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::telemetry::Telemetry;
use crate::trouble::{Incidents, Trouble};

/// How often to look, given the shortest lease of the registered handlers.
pub(crate) fn tick_for(shortest_lease: Duration) -> Duration {
    (shortest_lease / 6).clamp(Duration::from_millis(20), Duration::from_secs(5))
}

/// Runs until `stop` fires.
pub(crate) async fn run(
    client: Client,
    registry: Registry,
    tick: Duration,
    stop: CancellationToken,
    incidents: Incidents,
    telemetry: Telemetry,
) {
    let mut trouble = Trouble::new("heartbeat", &incidents);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        for ((queue, duration), leases) in registry.due_for_heartbeat(now) {
            let extended = tokio::select! {
                r = client.extend_leases(&queue, &leases, duration) => r,
                _ = stop.cancelled() => return,
            };
            match extended {
                Ok(held) => {
                    trouble.ok();
                    telemetry.heartbeat(leases.len());
                    let until = now + duration;
                    for lease in &leases {
                        if held.contains(&lease.subject) {
                            registry.extended(lease, until);
                        } else if registry.lost(lease) {
                            tracing::warn!(queue = %lease.queue, subject = %lease.subject,
                                "lease lost: the handler is cancelled and its result will be discarded");
                        }
                    }
                }
                Err(e @ fetchq_core::Error::QueueNotFound { .. }) => {
                    // the queue was dropped under us: nothing is held any more
                    trouble.ok();
                    tracing::warn!(queue = %queue, error = %e, leases = leases.len(),
                        "queue dropped: its handlers are cancelled and their results discarded");
                    for lease in &leases {
                        registry.lost(lease);
                    }
                }
                Err(e) => {
                    trouble.failed(&e);
                }
            }
        }
    }
}

/// Cancels the handlers whose leases run out before the next look (by the
/// local clock, which starts a lease before the database does): with no
/// extension getting through, the database hands such a document to another
/// worker once its lease ends there. A loop of its own, so that an extension
/// hanging on a cut link cannot hold it up. Runs until `stop` fires.
pub(crate) async fn watch_expiry(registry: Registry, tick: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.cancelled() => return,
        }
        let cancelled = registry.lose_expiring(Instant::now() + tick);
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                "leases ran out without an extension getting through: their handlers are cancelled and their results discarded"
            );
        }
    }
}
