//! Applies handler outcomes, batching completions and reschedules of the same
//! queue into one round-trip. Batching is natural: whatever arrived while the
//! previous write ran goes in the next one, so an idle system adds no delay and
//! a busy one gets large batches (at most `MAX_BATCH`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use fetchq_core::{Client, Error, Lease, Schedule};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::handler::Outcome;
use crate::registry::Registry;
use crate::stats::{Counters, bump};
use crate::trouble::Trouble;

const MAX_BATCH: usize = 500;

/// One outcome to write.
#[derive(Debug)]
pub(crate) struct Resolution {
    pub(crate) lease: Lease,
    pub(crate) outcome: Outcome,
    /// The handler's version and `migrate_to`, to resolve [`Outcome::upgrade`].
    pub(crate) version: i32,
    pub(crate) migrate_to: Option<i32>,
    pub(crate) counters: Arc<Counters>,
}

/// Runs until every sender is gone and the last batch is written, or until
/// `force` fires (then pending outcomes are dropped: their documents come back
/// as orphans after their lease).
pub(crate) async fn run(
    client: Client,
    mut rx: mpsc::UnboundedReceiver<Resolution>,
    registry: Registry,
    force: CancellationToken,
) {
    let mut trouble = Trouble::new("writing outcomes");
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = force.cancelled() => return,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        loop {
            match write(&client, &batch, &registry).await {
                Ok(()) => {
                    trouble.ok();
                    break;
                }
                Err(e) => {
                    let wait = trouble.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = force.cancelled() => return,
                    }
                }
            }
        }
    }
}

/// Writes one batch; on success every resolution is accounted for (applied or
/// lease lost) and retired from the registry.
async fn write(client: &Client, batch: &[Resolution], registry: &Registry) -> Result<(), Error> {
    let mut completes: HashMap<&str, Vec<&Resolution>> = HashMap::new();
    let mut reschedules: HashMap<&str, Vec<&Resolution>> = HashMap::new();
    let mut singles = Vec::new();
    for r in batch {
        match &r.outcome {
            Outcome::Complete { .. } => {
                completes.entry(r.lease.queue.as_str()).or_default().push(r)
            }
            Outcome::Reschedule { .. } => reschedules
                .entry(r.lease.queue.as_str())
                .or_default()
                .push(r),
            _ => singles.push(r),
        }
    }
    // a retried batch cannot apply twice: every write below is fenced by the
    // lease token, so a second attempt finds the lease gone
    for (queue, items) in &completes {
        let args: Vec<(Lease, Option<Value>)> = items
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Complete { payload } => (r.lease.clone(), payload.clone()),
                _ => (r.lease.clone(), None),
            })
            .collect();
        let done: HashSet<String> = client
            .complete_many(queue, &args)
            .await?
            .into_iter()
            .collect();
        for r in items {
            settle(registry, r, done.contains(&r.lease.subject), |c| {
                &c.completed
            });
        }
    }
    for (queue, items) in &reschedules {
        let args: Vec<(Lease, Schedule, Option<Value>)> = items
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Reschedule { at, payload } => (r.lease.clone(), *at, payload.clone()),
                _ => (r.lease.clone(), Schedule::Now, None),
            })
            .collect();
        let done: HashSet<String> = client
            .reschedule_many(queue, &args)
            .await?
            .into_iter()
            .collect();
        for r in items {
            settle(registry, r, done.contains(&r.lease.subject), |c| {
                &c.rescheduled
            });
        }
    }
    for r in singles {
        let lease = &r.lease;
        let applied = match &r.outcome {
            Outcome::Reject {
                message,
                details,
                ref_id,
            } => {
                client
                    .reject(lease, message, details.as_ref(), ref_id.as_deref())
                    .await
            }
            Outcome::Kill { payload } => client.kill(lease, payload.as_ref()).await,
            Outcome::Drop => client.drop_doc(lease).await,
            Outcome::Migrate {
                to_version,
                payload,
                at,
            } => {
                let to = to_version.or(r.migrate_to).unwrap_or(r.version + 1);
                client
                    .migrate_version(lease, to, payload.as_ref(), *at)
                    .await
            }
            Outcome::Complete { .. } | Outcome::Reschedule { .. } => Ok(()),
        };
        let applied = match applied {
            Ok(()) => true,
            Err(Error::LeaseLost { .. }) => false,
            Err(e) => return Err(e),
        };
        let counter: fn(&Counters) -> &AtomicU64 = match &r.outcome {
            Outcome::Reject { .. } => |c| &c.rejected,
            Outcome::Kill { .. } => |c| &c.killed,
            Outcome::Drop => |c| &c.dropped,
            _ => |c| &c.migrated,
        };
        settle(registry, r, applied, counter);
    }
    Ok(())
}

fn settle(
    registry: &Registry,
    r: &Resolution,
    applied: bool,
    counter: impl Fn(&Counters) -> &AtomicU64,
) {
    let lease = &r.lease;
    if applied {
        bump(counter(&r.counters), 1);
    } else {
        // counted once, whether the heartbeat noticed first or we do now
        registry.lost(lease);
        tracing::debug!(queue = %lease.queue, subject = %lease.subject, "lease lost: outcome discarded");
    }
    registry.remove(lease);
}
