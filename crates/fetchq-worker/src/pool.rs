//! One pool per registered handler: picks as many documents as it has free
//! slots (never more), runs each in its own task, and on shutdown lets them
//! finish until the deadline, then gives back what is left.

use std::sync::Arc;
use std::time::Duration;

use fetchq_core::{Client, Document, Error, Lease, PickOptions};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::completer::Resolution;
use crate::erased::Registered;
use crate::handler::{Context, HandlerError, Outcome};
use crate::registry::{Entry, Registry, State};
use crate::stats::{Counters, bump};
use crate::trouble::Trouble;

/// What a pool shares with the rest of the runtime.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) registry: Registry,
    pub(crate) outcomes: mpsc::UnboundedSender<Resolution>,
    /// Stop picking and drain.
    pub(crate) shutdown: CancellationToken,
    /// Stop now.
    pub(crate) force: CancellationToken,
    /// How long in-flight handlers may still run once shutdown starts.
    pub(crate) grace: Duration,
}

/// How long a busy pool waits for more free slots before a small pick.
const REFILL_WAIT: Duration = Duration::from_millis(2);

/// The smallest idle wait, so a due-but-locked document cannot make us spin.
const MIN_IDLE_WAIT: Duration = Duration::from_millis(5);

pub(crate) async fn run(
    reg: Registered,
    shared: Shared,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
) {
    let opts = &reg.options;
    let name = opts.name();
    let pick = PickOptions::new()
        .version(opts.version)
        .lease(opts.lease)
        .limit(i32::try_from(opts.batch).unwrap_or(i32::MAX));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut leases: Vec<Lease> = Vec::new();
    let mut trouble = Trouble::new(format!("picking for {name}"));
    let low_water = opts.batch.min(opts.concurrency).div_ceil(2);
    let mut waited = false;
    tracing::info!(handler = %name, queue = %opts.queue, version = opts.version, concurrency = opts.concurrency, "pool started");

    while !shared.shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let free = opts.concurrency.saturating_sub(tasks.len());
        if free == 0 {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = shared.shutdown.cancelled() => {}
            }
            continue;
        }
        // busy: let more slots free up before picking, so one pick serves many
        // slots instead of one; fast handlers reach the low-water mark at once,
        // slow ones cost at most REFILL_WAIT
        if !tasks.is_empty() && free < low_water && !waited {
            waited = true;
            let deadline = tokio::time::sleep(REFILL_WAIT);
            tokio::pin!(deadline);
            while opts.concurrency.saturating_sub(tasks.len()) < low_water && !tasks.is_empty() {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = &mut deadline => break,
                    _ = shared.shutdown.cancelled() => break,
                }
            }
            continue;
        }
        // after one bounded wait, pick whatever is free
        waited = false;
        let limit = i32::try_from(free.min(opts.batch)).unwrap_or(i32::MAX);
        match shared.client.pick(&opts.queue, &pick.limit(limit)).await {
            Ok(docs) if docs.is_empty() => {
                trouble.ok();
                let wait =
                    idle_wait(&shared.client, &opts.queue, opts.version, opts.idle_poll).await;
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.shutdown.cancelled() => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
            Ok(docs) => {
                trouble.ok();
                bump(&counters.picked, docs.len() as u64);
                leases.retain(|l| shared.registry.is_running(l));
                for doc in docs {
                    leases.push(doc.lease.clone());
                    spawn(&mut tasks, &reg, &shared, &counters, doc);
                }
            }
            Err(e @ (Error::QueueNotFound { .. } | Error::InvalidArgument { .. })) => {
                // configuration, not trouble: say so loudly, keep retrying slowly
                tracing::error!(handler = %name, error = %e, "cannot pick");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shared.shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                let wait = trouble.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.shutdown.cancelled() => {}
                }
            }
        }
    }
    drain(&name, &mut tasks, leases, &shared, &counters).await;
}

/// How long to sleep when nothing is due: until the next planned document of
/// this pool's version, at most `idle_poll`; `idle_poll` when none is planned
/// or the queue is paused. The wait is measured on the database's clock.
async fn idle_wait(client: &Client, queue: &str, version: i32, idle_poll: Duration) -> Duration {
    match client.queue_next_due_for(queue, version).await {
        Ok(Some(due_in)) => due_in.clamp(MIN_IDLE_WAIT, idle_poll),
        _ => idle_poll,
    }
}

fn spawn(
    tasks: &mut JoinSet<()>,
    reg: &Registered,
    shared: &Shared,
    counters: &Arc<Counters>,
    doc: Document,
) {
    let opts = &reg.options;
    let cancel = shared.shutdown.child_token();
    shared.registry.insert(Entry {
        lease: doc.lease.clone(),
        lease_duration: opts.lease,
        expires: Instant::now() + opts.lease,
        cancel: cancel.clone(),
        state: State::Running,
        counters: counters.clone(),
    });
    let span = tracing::info_span!("fetchq.doc", queue = %opts.queue, subject = %doc.subject,
        version = doc.version, attempt = doc.attempts, handler = %opts.name());
    let ctx = Context {
        client: shared.client.clone(),
        lease: doc.lease.clone(),
        cancel: cancel.clone(),
        span: span.clone(),
    };
    let lease = doc.lease.clone();
    let future = reg.handler.call(doc, ctx);
    let (max_runtime, version, migrate_to) = (opts.max_runtime, opts.version, opts.migrate_to);
    let shared = shared.clone();
    let counters = counters.clone();
    tasks.spawn(
        async move {
            // the handler runs in its own task: a panic is caught, not spread;
            // the guard aborts it if this task is aborted
            let handle = AbortOnDrop(tokio::spawn(future.in_current_span()));
            let outcome = run_handler(handle, max_runtime, &cancel, &counters).await;
            if !shared.registry.submit(&lease) {
                // the lease was lost meanwhile (already counted): discard
                shared.registry.remove(&lease);
                return;
            }
            tracing::debug!(outcome = outcome.kind(), "handled");
            let resolution = Resolution {
                lease,
                outcome,
                version,
                migrate_to,
                counters,
            };
            if let Err(unsent) = shared.outcomes.send(resolution) {
                shared.registry.remove(&unsent.0.lease);
            }
        }
        .instrument(span),
    );
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<Outcome, HandlerError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_handler(
    mut handle: AbortOnDrop,
    max_runtime: Option<Duration>,
    cancel: &CancellationToken,
    counters: &Counters,
) -> Outcome {
    let joined = match max_runtime {
        None => (&mut handle.0).await,
        Some(limit) => match tokio::time::timeout(limit, &mut handle.0).await {
            Ok(joined) => joined,
            Err(_) => {
                cancel.cancel();
                handle.0.abort();
                bump(&counters.timed_out, 1);
                tracing::warn!(
                    ?limit,
                    "handler exceeded its max runtime: cancelled and rejected"
                );
                return Outcome::reject(format!(
                    "max runtime of {limit:?} exceeded: the handler was cancelled"
                ));
            }
        },
    };
    match joined {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => {
            bump(&counters.failed, 1);
            tracing::warn!(error = %err, "handler failed");
            err.into_outcome()
        }
        Err(join) if join.is_panic() => {
            bump(&counters.failed, 1);
            let panic = join.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            tracing::error!(panic = %message, "handler panicked");
            Outcome::reject(format!("handler panicked: {message}"))
        }
        Err(_) => Outcome::reject("handler task was cancelled"),
    }
}

/// Shutdown: wait for in-flight handlers until the grace period ends (or the
/// force token fires), then abort the rest and release their documents.
async fn drain(
    name: &str,
    tasks: &mut JoinSet<()>,
    leases: Vec<Lease>,
    shared: &Shared,
    counters: &Counters,
) {
    if !tasks.is_empty() {
        tracing::info!(handler = %name, in_flight = tasks.len(), "shutting down: waiting for in-flight handlers");
    }
    let deadline = tokio::time::sleep(shared.grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            _ = &mut deadline => break,
            _ = shared.force.cancelled() => break,
        }
    }
    if tasks.is_empty() {
        return;
    }
    tracing::warn!(handler = %name, left = tasks.len(), "grace period over: cancelling the rest");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if shared.force.is_cancelled() {
        return; // forced: the documents come back as orphans after their lease
    }
    let mut by_queue: std::collections::HashMap<String, Vec<Lease>> =
        std::collections::HashMap::new();
    for lease in leases.into_iter().filter(|l| shared.registry.is_running(l)) {
        by_queue.entry(lease.queue.clone()).or_default().push(lease);
    }
    for (queue, leases) in by_queue {
        match shared.client.release(&queue, &leases).await {
            Ok(released) => {
                bump(&counters.released, released.len() as u64);
                tracing::info!(handler = %name, released = released.len(), "gave back unfinished documents");
            }
            Err(e) => {
                tracing::warn!(handler = %name, error = %e, "could not give documents back: they return after their lease")
            }
        }
        for lease in &leases {
            shared.registry.remove(lease);
        }
    }
}
