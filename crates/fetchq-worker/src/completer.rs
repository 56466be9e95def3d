//! Applies handler outcomes, batching completions and reschedules of the same
//! queue into one round-trip. Batching is natural: whatever arrived while the
//! previous write ran goes in the next one, so an idle system adds no delay and
//! a busy one gets large batches (at most `MAX_BATCH`).
//!
//! Failures are classified ([`fetchq_core::Error::is_transient`]):
//! - **transient** (connection trouble, a lost race): the batch is retried with
//!   backoff; outcomes whose lease ran out meanwhile are dropped (their
//!   documents come back as orphans);
//! - **permanent** (bad input, a payload PostgreSQL or the queue refuses, a
//!   target version out of range...): the batch is written again one outcome at
//!   a time, so only the refused outcome is affected. Its document is rejected
//!   instead, with the error in its error log (message stripped of NULs, the
//!   offending payload dropped); if even that is refused, it stops being
//!   heartbeated and returns to the queue as an orphan after its lease. A
//!   dropped queue has nothing left to write to: its outcomes are dropped.
//!
//! Outcomes waiting here are bounded by a semaphore (see `Runtime::max_pending_outcomes`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use fetchq_core::{Client, Error, Lease, MetricBatch, Schedule};
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handler::Outcome;
use crate::registry::Registry;
use crate::stats::{Counters, bump};
use crate::telemetry::Telemetry;
use crate::trouble::{Incidents, Trouble};

const MAX_BATCH: usize = 500;

/// The longest error message written in a document's error log for a refused outcome.
const MAX_MESSAGE: usize = 2000;

/// One outcome to write.
#[derive(Debug)]
pub(crate) struct Resolution {
    pub(crate) lease: Lease,
    pub(crate) outcome: Outcome,
    /// Custom counters and timers the handler recorded, written after the batch.
    pub(crate) metrics: MetricBatch,
    /// The handler's version and `migrate_to`, to resolve [`Outcome::upgrade`].
    pub(crate) version: i32,
    pub(crate) migrate_to: Option<i32>,
    pub(crate) counters: Arc<Counters>,
    /// Its place among the outcomes waiting to be written; freed once written.
    pub(crate) _slot: OwnedSemaphorePermit,
}

struct Writer {
    client: Client,
    registry: Registry,
    /// The idle pools of each queue, woken after a reschedule is written: they
    /// may sleep past its planned time, having looked before it was written.
    wakers: HashMap<String, Vec<Arc<Notify>>>,
    trouble: Trouble,
    incidents: Incidents,
    /// Outcomes dropped because shutdown ran out of time.
    unwritten: std::sync::atomic::AtomicUsize,
    /// Give up: shutdown's deadline passed, or it was forced.
    hard: CancellationToken,
    /// Custom metrics not written yet (a transient failure keeps them for the next batch).
    metrics: MetricBatch,
    telemetry: Telemetry,
}

/// Runs until every sender is gone and the last batch is written, or until
/// `hard` fires (the shutdown deadline passed or shutdown was forced; pending
/// outcomes are then dropped and their documents come back as orphans after
/// their lease).
pub(crate) async fn run(
    client: Client,
    mut rx: mpsc::Receiver<Resolution>,
    registry: Registry,
    hard: CancellationToken,
    incidents: Incidents,
    wakers: HashMap<String, Vec<Arc<Notify>>>,
    telemetry: Telemetry,
) {
    let mut w = Writer {
        client,
        registry,
        wakers,
        trouble: Trouble::new("writing outcomes", &incidents),
        incidents,
        unwritten: std::sync::atomic::AtomicUsize::new(0),
        hard,
        metrics: MetricBatch::default(),
        telemetry,
    };
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = w.hard.cancelled() => break,
        };
        if w.hard.is_cancelled() {
            // out of time while writing the previous batch
            if let Some(r) = first {
                w.abandon(&r);
            }
            break;
        }
        let Some(first) = first else {
            // the last metrics kept after a transient failure: one more try
            let hard = w.hard.clone();
            tokio::select! {
                () = w.write_metrics() => {}
                () = hard.cancelled() => {}
            }
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        for r in &mut batch {
            w.metrics.append(std::mem::take(&mut r.metrics));
        }
        // a write blocked in the database (a row lock held elsewhere, a hung
        // connection) must not hold shutdown past its end: give up on it then
        let (n, hard) = (batch.len(), w.hard.clone());
        let started = Instant::now();
        tokio::select! {
            () = w.write_batch(batch) => w.telemetry.outcome_batch(started.elapsed()),
            () = hard.cancelled() => {
                // some of them may have been written: counted as not written
                w.unwritten.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                break;
            }
        }
        // the handlers' custom metrics: one more round trip per batch, not per
        // document, and never in the way of the outcomes (written first)
        tokio::select! {
            () = w.write_metrics() => {}
            () = hard.cancelled() => break,
        }
    }
    // out of time: what is left is not written
    rx.close();
    while let Ok(r) = rx.try_recv() {
        w.abandon(&r);
    }
    let left = w.unwritten.load(std::sync::atomic::Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            outcomes = left,
            "shutdown deadline passed: outcomes not written, their documents come back after their lease"
        );
    }
}

/// What became of one attempt to write.
enum Step<T> {
    Done(T),
    Refused(Error),
    /// Out of time, or the lease ran out while retrying: forget it.
    GaveUp,
}

/// The most custom metric entries kept while the database refuses them for a
/// transient reason; past it they are dropped.
const MAX_PENDING_METRICS: usize = 200_000;

impl Writer {
    /// Writes the custom metrics gathered so far, once: on a transient failure
    /// they wait for the next batch (bounded), a permanent refusal drops them
    /// with an error log. Never retried in a loop, never holds the outcomes.
    async fn write_metrics(&mut self) {
        if self.metrics.is_empty() {
            return;
        }
        match self.client.metric_write_batch(&self.metrics).await {
            Ok(_) => self.metrics.clear(),
            Err(e) if e.is_transient() && self.metrics.len() <= MAX_PENDING_METRICS => {
                tracing::debug!(error = %e, entries = self.metrics.len(),
                    "custom metrics not written: kept for the next batch");
            }
            Err(e) => {
                tracing::error!(error = %e, entries = self.metrics.len(),
                    "custom metrics refused by the database: dropped");
                self.metrics.clear();
            }
        }
    }

    /// Writes a batch; every resolution ends settled, dropped or abandoned.
    async fn write_batch(&mut self, mut batch: Vec<Resolution>) {
        loop {
            let failed = match self.write_groups(batch).await {
                Ok(()) => {
                    self.trouble.ok();
                    return;
                }
                Err(failed) => failed,
            };
            let (e, rest) = failed;
            if !e.is_transient() {
                tracing::debug!(error = %e, outcomes = rest.len(),
                    "a batch of outcomes was refused: writing them one by one");
                for r in rest {
                    self.write_alone(r).await;
                }
                return;
            }
            let wait = self.trouble.failed(&e);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.hard.cancelled() => {}
            }
            batch = self.prune(rest);
            if batch.is_empty() {
                return;
            }
        }
    }

    /// Drops the outcomes that can no longer be written (out of time, or their
    /// lease ran out while waiting).
    fn prune(&self, batch: Vec<Resolution>) -> Vec<Resolution> {
        let now = Instant::now();
        let hard = self.hard.is_cancelled();
        batch
            .into_iter()
            .filter(|r| {
                if hard || self.registry.expired(&r.lease, now) {
                    self.abandon(r);
                    false
                } else {
                    true
                }
            })
            .collect()
    }

    fn abandon(&self, r: &Resolution) {
        let lease = &r.lease;
        if self.hard.is_cancelled() {
            // shutdown is out of time: counted and logged once, in `run`
            self.unwritten
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(queue = %lease.queue, subject = %lease.subject, outcome = r.outcome.kind(),
                "shutdown deadline: outcome not written");
        } else if self.registry.discard(lease) {
            tracing::warn!(queue = %lease.queue, subject = %lease.subject, outcome = r.outcome.kind(),
                "outcome not written before its lease ran out: the document comes back as an orphan");
        }
        self.registry.remove(lease);
    }

    /// Writes completions and reschedules grouped by queue, the rest one by
    /// one. On a failure, returns the error and every resolution not yet
    /// settled (the failed group first).
    async fn write_groups(
        &mut self,
        batch: Vec<Resolution>,
    ) -> Result<(), (Error, Vec<Resolution>)> {
        let mut groups: Vec<Vec<Resolution>> = Vec::new();
        let mut index: HashMap<(bool, String), usize> = HashMap::new();
        for r in batch {
            let grouped = match &r.outcome {
                Outcome::Complete { .. } => Some(true),
                Outcome::Reschedule { .. } => Some(false),
                _ => None,
            };
            match grouped {
                Some(complete) => {
                    let k = (complete, r.lease.queue.clone());
                    let i = *index.entry(k).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[i].push(r);
                }
                None => groups.push(vec![r]),
            }
        }
        let mut groups = groups.into_iter();
        while let Some(group) = groups.next() {
            if let Err(e) = self.write_group(&group).await {
                let rest = group.into_iter().chain(groups.flatten()).collect();
                return Err((e, rest));
            }
        }
        Ok(())
    }

    /// Writes one group (same kind, same queue) and settles it.
    async fn write_group(&self, group: &[Resolution]) -> Result<(), Error> {
        let Some(first) = group.first() else {
            return Ok(());
        };
        let queue = first.lease.queue.as_str();
        // a retried write cannot apply twice: every write below is fenced by
        // the lease token, so a second attempt finds the lease gone
        match &first.outcome {
            Outcome::Complete { .. } => {
                let args: Vec<(Lease, Option<Value>)> = group
                    .iter()
                    .map(|r| match &r.outcome {
                        Outcome::Complete { payload } => (r.lease.clone(), payload.clone()),
                        _ => (r.lease.clone(), None),
                    })
                    .collect();
                let done = self.client.complete_many(queue, &args).await?;
                for r in group {
                    self.settle(r, done.contains(&r.lease.subject), |c| &c.completed);
                }
            }
            Outcome::Reschedule { .. } => {
                let args: Vec<(Lease, Schedule, Option<Value>)> = group
                    .iter()
                    .map(|r| match &r.outcome {
                        Outcome::Reschedule { at, payload } => {
                            (r.lease.clone(), *at, payload.clone())
                        }
                        _ => (r.lease.clone(), Schedule::Now, None),
                    })
                    .collect();
                let done = self.client.reschedule_many(queue, &args).await?;
                for r in group {
                    self.settle(r, done.contains(&r.lease.subject), |c| &c.rescheduled);
                }
                if !done.is_empty() {
                    for w in self.wakers.get(queue).into_iter().flatten() {
                        w.notify_one();
                    }
                }
            }
            _ => {
                for r in group {
                    let applied = match self.write_single(r).await {
                        Ok(()) => true,
                        Err(Error::LeaseLost { .. }) => false,
                        Err(e) => return Err(e),
                    };
                    self.settle(r, applied, counter_of(&r.outcome));
                }
            }
        }
        Ok(())
    }

    async fn write_single(&self, r: &Resolution) -> Result<(), Error> {
        let client = &self.client;
        let lease = &r.lease;
        match &r.outcome {
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
                let to = to_version
                    .or(r.migrate_to)
                    .unwrap_or(r.version.saturating_add(1));
                client
                    .migrate_version(lease, to, payload.as_ref(), *at)
                    .await
            }
            Outcome::Complete { payload } => {
                let done = client
                    .complete_many(&lease.queue, &[(lease.clone(), payload.clone())])
                    .await?;
                lost_unless(lease, !done.is_empty())
            }
            Outcome::Reschedule { at, payload } => {
                let done = client
                    .reschedule_many(&lease.queue, &[(lease.clone(), *at, payload.clone())])
                    .await?;
                lost_unless(lease, !done.is_empty())
            }
        }
    }

    /// Writes one outcome on its own; if the database refuses it, rejects the
    /// document instead (or lets it expire).
    async fn write_alone(&self, r: Resolution) {
        if self.hard.is_cancelled() {
            self.abandon(&r);
            return;
        }
        let mut trouble = Trouble::new("writing outcomes", &self.incidents);
        let step = retrying(&mut trouble, &self.registry, &self.hard, &r.lease, || {
            self.write_single(&r)
        })
        .await;
        match step {
            Step::Done(()) => self.settle(&r, true, counter_of(&r.outcome)),
            Step::Refused(Error::LeaseLost { .. }) => self.settle(&r, false, |c| &c.completed),
            Step::Refused(e) => self.refused(r, e).await,
            Step::GaveUp => self.abandon(&r),
        }
    }

    /// The database refused this outcome for good.
    async fn refused(&self, r: Resolution, e: Error) {
        let lease = &r.lease;
        bump(&r.counters.refused, 1);
        if let Error::QueueNotFound { .. } = e {
            tracing::warn!(queue = %lease.queue, subject = %lease.subject, outcome = r.outcome.kind(),
                "the queue no longer exists: outcome dropped");
            self.registry.remove(lease);
            return;
        }
        let message = refusal_message(&r.outcome, &e);
        tracing::error!(queue = %lease.queue, subject = %lease.subject, outcome = r.outcome.kind(), error = %e,
            "the database refused this outcome: the document is rejected instead");
        let mut trouble = Trouble::new("writing outcomes", &self.incidents);
        let client = &self.client;
        let step = retrying(&mut trouble, &self.registry, &self.hard, lease, || {
            client.reject(lease, &message, None, None)
        })
        .await;
        match step {
            Step::Done(()) => self.settle(&r, true, |c| &c.rejected),
            Step::Refused(Error::LeaseLost { .. }) => self.settle(&r, false, |c| &c.rejected),
            Step::Refused(e2) => {
                // even a plain reject is refused: record the error if we can,
                // stop heartbeating, and let the lease run out
                let _ = self
                    .client
                    .log_error(&lease.queue, &lease.subject, &message, None, None)
                    .await;
                tracing::error!(queue = %lease.queue, subject = %lease.subject, error = %e2,
                    "the reject was refused too: the document returns to the queue after its lease");
                self.registry.remove(lease);
            }
            Step::GaveUp => self.abandon(&r),
        }
    }

    fn settle(&self, r: &Resolution, applied: bool, counter: impl Fn(&Counters) -> &AtomicU64) {
        let lease = &r.lease;
        if applied {
            bump(counter(&r.counters), 1);
        } else {
            // counted once, whether the heartbeat noticed first or we do now
            self.registry.discard(lease);
            tracing::debug!(queue = %lease.queue, subject = %lease.subject, "lease lost: outcome discarded");
        }
        self.registry.remove(lease);
    }
}

/// Retries `op` while it fails transiently (until out of time or the lease ran out).
async fn retrying<T, F, Fut>(
    trouble: &mut Trouble,
    registry: &Registry,
    hard: &CancellationToken,
    lease: &Lease,
    mut op: F,
) -> Step<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    loop {
        match op().await {
            Ok(v) => {
                trouble.ok();
                return Step::Done(v);
            }
            Err(e) if e.is_transient() => {
                let wait = trouble.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = hard.cancelled() => {}
                }
                if hard.is_cancelled() || registry.expired(lease, Instant::now()) {
                    return Step::GaveUp;
                }
            }
            Err(e) => return Step::Refused(e),
        }
    }
}

fn counter_of(outcome: &Outcome) -> fn(&Counters) -> &AtomicU64 {
    match outcome {
        Outcome::Complete { .. } => |c| &c.completed,
        Outcome::Reschedule { .. } => |c| &c.rescheduled,
        Outcome::Reject { .. } => |c| &c.rejected,
        Outcome::Kill { .. } => |c| &c.killed,
        Outcome::Drop => |c| &c.dropped,
        Outcome::Migrate { .. } => |c| &c.migrated,
    }
}

fn lost_unless(lease: &Lease, applied: bool) -> Result<(), Error> {
    if applied {
        Ok(())
    } else {
        Err(Error::LeaseLost {
            queue: lease.queue.clone(),
            subject: lease.subject.clone(),
        })
    }
}

/// The error log message for a refused outcome: what was refused and why,
/// without NUL characters (PostgreSQL cannot store them) and bounded in length.
pub(crate) fn refusal_message(outcome: &Outcome, err: &Error) -> String {
    let mut message = match outcome {
        Outcome::Reject { message, .. } => {
            format!("{message} (this reject was refused by the database: {err})")
        }
        other => format!(
            "the handler's {} outcome was refused by the database: {err}",
            other.kind()
        ),
    };
    message.retain(|c| c != '\0');
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_messages_lose_nuls_and_length() {
        let err = Error::InvalidArgument {
            message: "bad".into(),
        };
        let m = refusal_message(&Outcome::reject(format!("a\0b{}", "é".repeat(3000))), &err);
        assert!(!m.contains('\0') && m.starts_with("ab") && m.len() <= MAX_MESSAGE);
        let m = refusal_message(&Outcome::complete(), &err);
        assert!(m.contains("complete outcome was refused") && m.contains("bad"));
    }
}
