//! One pool per registered handler: picks as many documents as it has free
//! slots (in several picks at once when `batch` is smaller than the free
//! slots), plus room in its local buffer when `batch` exceeds `concurrency`,
//! runs each in its own task, and on shutdown gives the buffer back at once,
//! lets running handlers finish until the deadline, then cancels them and
//! gives back what is left.
//!
//! Buffered documents are leased like running ones: in the registry, so the
//! heartbeat extends them and a lost lease is noticed before they start.
//! One that waits for a slot longer than [`buffer_wait`] is given back, so
//! a pool whose handlers slowed down does not sit on documents another
//! process could run.
//!
//! A slot is free once its outcome is handed to the completer, which takes at
//! most `max_pending_outcomes` of them at a time: when writes are slow, pools
//! stop picking instead of piling up documents that are picked but unwritten.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use fetchq_core::{Client, Document, Error, Lease, PickAnswer, PickOptions};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::completer::Resolution;
use crate::erased::Registered;
use crate::handler::{Context, HandlerError, Outcome};
use crate::registration::Owner;
use crate::registry::{Entry, Registry, State};
use crate::stats::{Counters, bump};
use crate::telemetry::Telemetry;
use crate::trouble::{Incidents, Trouble};

/// What a pool shares with the rest of the runtime.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) registry: Registry,
    pub(crate) outcomes: mpsc::Sender<Resolution>,
    /// Places among the outcomes waiting to be written.
    pub(crate) slots: Arc<Semaphore>,
    /// Stop picking and drain.
    pub(crate) shutdown: CancellationToken,
    /// In-flight handlers ran out of time: cancel them (their tokens are children).
    pub(crate) deadline: CancellationToken,
    /// Out of time to write anything (the end of `shutdown_timeout`), or forced.
    pub(crate) hard: CancellationToken,
    /// How long cancelled handlers get to return after `deadline`.
    pub(crate) cancel_wait: Duration,
    /// How long a cancelled handler may take to return before its task is
    /// aborted: `cancel_wait`, at most a quarter of `rescue_after` (a
    /// handler cancelled by a fence ends before maintenance may release its
    /// document).
    pub(crate) lost_wait: Duration,
    pub(crate) incidents: Incidents,
    pub(crate) telemetry: Telemetry,
    /// How many pools (handlers) share the client's connections.
    pub(crate) pools: usize,
    /// The owner to pick with (the process's registration), or not now.
    pub(crate) owner: Owner,
}

/// How long a busy pool waits for more free slots before a small pick.
const REFILL_WAIT: Duration = Duration::from_millis(2);

/// The smallest idle wait, so a due-but-locked document cannot make us spin.
const MIN_IDLE_WAIT: Duration = Duration::from_millis(5);

/// The most picks one pool runs at once (when `batch` is below its free
/// slots). Picks of one document spend most of their time waiting for their
/// commit to be flushed; more of them at once share each flush.
const MAX_PARALLEL_PICKS: usize = 16;

/// The longest a buffered document waits for a slot before it is given back.
const MAX_BUFFER_WAIT: Duration = Duration::from_secs(10);

/// How many picks a pool runs at once: as many as `batch`-sized picks fill
/// its slots (a batch below the concurrency), at most [`MAX_PARALLEL_PICKS`]
/// and at most its share of half the pool's connections (the `pools`
/// handlers of the runtime share them), so picks never take the connections
/// the heartbeat and the outcome writer need. Every pool keeps one pick: with
/// more handlers than half the connections, their single picks may take more.
fn parallel_picks(concurrency: usize, batch: usize, connections: usize, pools: usize) -> usize {
    if batch == 0 || batch >= concurrency {
        return 1;
    }
    concurrency
        .div_ceil(batch)
        .min(MAX_PARALLEL_PICKS)
        .min((connections / 2 / pools.max(1)).max(1))
}

/// How long a buffered document may wait for a slot: half its lease, at
/// most [`MAX_BUFFER_WAIT`].
fn buffer_wait(lease: Duration) -> Duration {
    (lease / 2).min(MAX_BUFFER_WAIT)
}

/// A picked document waiting in the pool's buffer for a free slot.
struct Buffered {
    doc: Document,
    cancel: CancellationToken,
    since: Instant,
}

pub(crate) async fn run(
    reg: Registered,
    shared: Shared,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
) {
    let opts = &reg.options;
    let name = opts.name();
    shared.telemetry.attach(&counters, &opts.queue, &name);
    let batch = opts.get_batch();
    let pick = PickOptions::new()
        .version(opts.version)
        .lease(opts.lease)
        .limit(i32::try_from(batch).unwrap_or(i32::MAX));
    // documents beyond the free slots that one pick may bring
    let room = batch.saturating_sub(opts.concurrency);
    let max_wait = buffer_wait(opts.lease);
    let mut buffer: VecDeque<Buffered> = VecDeque::with_capacity(room);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut leases: Vec<Lease> = Vec::new();
    let mut trouble = Trouble::new(format!("picking for {name}"), &shared.incidents);
    let low_water = batch.min(opts.concurrency).div_ceil(2);
    let mut waited = false;
    // a batch below the concurrency: picks of `batch` run side by side, as
    // that many single-fetch workers would (at most MAX_PARALLEL_PICKS)
    let connections = shared.client.pool().options().get_max_connections() as usize;
    let max_picks = parallel_picks(opts.concurrency, batch, connections, shared.pools);
    // picks in flight, and the slots each may fill
    let mut picks: JoinSet<Picked> = JoinSet::new();
    let mut limits: std::collections::HashMap<tokio::task::Id, usize> = Default::default();
    // the last pick leased nothing (or none was made yet): one pick at a
    // time, so an idle pool costs one statement per poll
    let mut idle = true;
    // the queue's rate limit held documents back: no pick before this
    // instant (it would lease nothing), whatever wakes the pool
    let mut not_before: Option<Instant> = None;
    let mut owner = shared.owner.clone();
    tracing::info!(handler = %name, queue = %opts.queue, version = opts.version, concurrency = opts.concurrency, batch, "pool started");

    while !shared.shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        // free slots take buffered documents first
        while tasks.len() < opts.concurrency {
            let Some(b) = buffer.pop_front() else { break };
            if shared.registry.is_running(&b.doc.lease) {
                spawn(&mut tasks, &reg, &shared, &counters, b.doc, b.cancel);
            } else {
                // lost while it waited (the heartbeat counted it)
                shared.registry.remove(&b.doc.lease);
            }
        }
        if let Err(e) =
            give_back_stale(&mut buffer, max_wait, &opts.queue, &shared, &counters).await
        {
            // one warning per incident: the documents come back after their lease
            trouble.failed(&e);
        }
        let reserved: usize = limits.values().sum();
        let free = opts
            .concurrency
            .saturating_sub(tasks.len())
            .saturating_sub(reserved);
        let in_flight = if idle { 1 } else { max_picks };
        let rate_ok = not_before.is_none_or(|t| Instant::now() >= t);
        // not registered, or not trusted: no pick until that changes
        let pick_owner = owner.for_pick();
        let may_pick = free > 0
            && buffer.is_empty()
            && picks.len() < in_flight
            && rate_ok
            && pick_owner.is_some();
        // busy, with no pick in flight: let more slots free up before
        // picking, so one pick serves many slots instead of one; fast
        // handlers reach the low-water mark at once, slow ones cost at most
        // REFILL_WAIT
        if may_pick && picks.is_empty() && !tasks.is_empty() && free < low_water && !waited {
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
        if may_pick {
            waited = false;
            // the buffer is empty here (free slots took it): fill its room too
            let limit = if max_picks > 1 {
                batch.min(free)
            } else {
                (free + room).min(batch)
            };
            let (client, queue) = (shared.client.clone(), opts.queue.clone());
            let this_pick = pick
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .owner(pick_owner.flatten());
            let task = picks.spawn(async move {
                let started = Instant::now();
                // an empty pick also says when the next planned document is
                // due, and a rate-limited one when the next slot opens
                let result = client.pick_answer(&queue, &this_pick).await;
                Picked {
                    elapsed: started.elapsed(),
                    result,
                }
            });
            limits.insert(task.id(), limit);
            continue;
        }
        let oldest = buffer.front().map(|b| b.since + max_wait);
        let slot_opens = not_before.filter(|_| !rate_ok);
        let picked = tokio::select! {
            Some(joined) = picks.join_next_with_id(), if !picks.is_empty() => joined,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = sleep_until(oldest) => continue,
            () = sleep_until(slot_opens) => continue,
            () = owner.changed(), if pick_owner.is_none() => continue,
            _ = shared.shutdown.cancelled() => continue,
            // stuck on an unreachable server past the deadline: give up on it
            _ = shared.deadline.cancelled() => break,
        };
        let picked = match picked {
            Ok((id, picked)) => {
                limits.remove(&id);
                picked
            }
            Err(e) => {
                // a pick task cannot fail but by a bug: its slots are freed
                limits.remove(&e.id());
                tracing::error!(handler = %name, error = %e, "a pick task failed");
                continue;
            }
        };
        if picked.result.is_ok() {
            shared.telemetry.picked(&counters, picked.elapsed);
        }
        if let Ok(answer) = &picked.result {
            not_before = answer
                .rate_wait
                .map(|w| Instant::now() + rate_wait(w, opts.idle_poll));
        }
        match picked.result {
            Ok(answer) if answer.docs.is_empty() => {
                trouble.ok();
                idle = true;
                if !picks.is_empty() || not_before.is_some() {
                    // a rate-limited pick: the loop sleeps until the slot opens
                    continue;
                }
                let wait = idle_wait(answer.next_due, opts.idle_poll);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.shutdown.cancelled() => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
            Ok(PickAnswer { docs, .. }) => {
                trouble.ok();
                idle = false;
                let held = Held {
                    reg: &reg,
                    shared: &shared,
                    counters: &counters,
                    picked_at: Instant::now()
                        .checked_sub(picked.elapsed)
                        .unwrap_or_else(Instant::now),
                };
                held.take(&mut tasks, &mut buffer, &mut leases, docs);
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
    // picks still in flight: what they lease goes back with the buffer
    loop {
        let joined = tokio::select! {
            j = picks.join_next() => j,
            _ = shared.deadline.cancelled() => None,
        };
        let Some(joined) = joined else { break };
        if let Ok(Picked {
            result: Ok(PickAnswer { docs, .. }),
            elapsed,
        }) = joined
        {
            let held = Held {
                reg: &reg,
                shared: &shared,
                counters: &counters,
                picked_at: Instant::now()
                    .checked_sub(elapsed)
                    .unwrap_or_else(Instant::now),
            };
            let now = Instant::now();
            for doc in docs {
                held.keep(&mut buffer, &mut leases, doc, now);
            }
        }
    }
    picks.abort_all();
    // the buffer first, at once: nobody here will run those
    let buffered: Vec<Lease> = buffer.drain(..).map(|b| b.doc.lease).collect();
    if let Err(e) = give_back(&opts.queue, buffered, &shared, &counters).await {
        tracing::warn!(handler = %name, error = %e, "could not give buffered documents back: they return after their lease");
    }
    drain(&name, &mut tasks, leases, &shared, &counters).await;
}

/// What one pick task brings back.
struct Picked {
    elapsed: Duration,
    result: Result<PickAnswer, Error>,
}

/// What holding picked documents needs.
struct Held<'a> {
    reg: &'a Registered,
    shared: &'a Shared,
    counters: &'a Arc<Counters>,
    /// When the pick was sent: the lease runs from no earlier than this in
    /// the database, so the local clock counts it from here.
    picked_at: Instant,
}

impl Held<'_> {
    /// Holds every picked document: runs as many as there are free slots,
    /// and buffers the rest.
    fn take(
        &self,
        tasks: &mut JoinSet<()>,
        buffer: &mut VecDeque<Buffered>,
        leases: &mut Vec<Lease>,
        docs: Vec<Document>,
    ) {
        let (reg, shared, counters) = (self.reg, self.shared, self.counters);
        let opts = &reg.options;
        bump(&counters.picked, docs.len() as u64);
        leases.retain(|l| shared.registry.is_running(l));
        let now = Instant::now();
        for doc in docs {
            if tasks.len() < opts.concurrency {
                let Some(cancel) = hold(shared, opts.lease, self.picked_at, counters, &doc) else {
                    continue;
                };
                leases.push(doc.lease.clone());
                spawn(tasks, reg, shared, counters, doc, cancel);
            } else {
                self.keep(buffer, leases, doc, now);
            }
        }
    }

    /// Holds a picked document and puts it in the buffer.
    fn keep(
        &self,
        buffer: &mut VecDeque<Buffered>,
        leases: &mut Vec<Lease>,
        doc: Document,
        since: Instant,
    ) {
        let Some(cancel) = hold(
            self.shared,
            self.reg.options.lease,
            self.picked_at,
            self.counters,
            &doc,
        ) else {
            return;
        };
        leases.push(doc.lease.clone());
        buffer.push_back(Buffered { doc, cancel, since });
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Gives back the buffered documents that waited for a slot longer than
/// `max_wait` (the oldest are at the front).
async fn give_back_stale(
    buffer: &mut VecDeque<Buffered>,
    max_wait: Duration,
    queue: &str,
    shared: &Shared,
    counters: &Counters,
) -> Result<(), Error> {
    let now = Instant::now();
    let stale = buffer
        .iter()
        .take_while(|b| now.saturating_duration_since(b.since) >= max_wait)
        .count();
    if stale == 0 {
        return Ok(());
    }
    let leases: Vec<Lease> = buffer.drain(..stale).map(|b| b.doc.lease).collect();
    tracing::debug!(
        queue,
        n = leases.len(),
        "buffered documents waited too long for a slot"
    );
    give_back(queue, leases, shared, counters).await
}

/// Releases `leases` (still held, not started): due again for anyone,
/// attempts not burned. On failure they come back after their lease.
async fn give_back(
    queue: &str,
    leases: Vec<Lease>,
    shared: &Shared,
    counters: &Counters,
) -> Result<(), Error> {
    let leases: Vec<Lease> = leases
        .into_iter()
        .filter(|l| {
            let held = shared.registry.is_running(l);
            // not ours to run any more: the heartbeat leaves them be
            shared.registry.remove(l);
            held
        })
        .collect();
    if leases.is_empty() {
        return Ok(());
    }
    let released = tokio::select! {
        r = shared.client.release(queue, &leases) => r?,
        _ = shared.hard.cancelled() => return Err(Error::Database(sqlx::Error::PoolTimedOut)),
    };
    bump(&counters.released, released.len() as u64);
    tracing::debug!(
        queue,
        released = released.len(),
        "gave back buffered documents"
    );
    Ok(())
}

/// How long to wait for the next slot of a rate-limited queue: as the pick
/// measured it, at least [`MIN_IDLE_WAIT`] (a slot held by a pick in progress
/// elsewhere reads as free now) and at most `idle_poll` (a limit raised
/// meanwhile is seen within a poll).
fn rate_wait(wait: Duration, idle_poll: Duration) -> Duration {
    wait.max(MIN_IDLE_WAIT).min(idle_poll.max(MIN_IDLE_WAIT))
}

/// How long to sleep when nothing is due: until the next planned document of
/// this pool's version (`next_due`, as the empty pick measured it on the
/// database's clock), at most `idle_poll`; `idle_poll` when none is planned or
/// the queue is paused. Never below MIN_IDLE_WAIT unless `idle_poll` is
/// (`clamp` would panic on an `idle_poll` shorter than MIN_IDLE_WAIT).
fn idle_wait(next_due: Option<Duration>, idle_poll: Duration) -> Duration {
    match next_due {
        Some(due_in) => due_in.max(MIN_IDLE_WAIT).min(idle_poll),
        None => idle_poll,
    }
}

/// Holds a picked document's lease in the registry (heartbeated from now
/// on); returns its cancellation token. `None`: the registry refused it (its
/// pick was made under a registration this process no longer trusts, so
/// maintenance may have handed the document to another worker): it is not
/// run, and is given back (if the lease is still this pick's).
fn hold(
    shared: &Shared,
    lease: Duration,
    picked_at: Instant,
    counters: &Arc<Counters>,
    doc: &Document,
) -> Option<CancellationToken> {
    // fires on a lost lease, past max runtime, or when shutdown stops waiting
    // (not when shutdown starts: in-flight work may finish within the deadline)
    let cancel = shared.deadline.child_token();
    let held = shared.registry.insert(Entry {
        lease: doc.lease.clone(),
        lease_duration: lease,
        expires: picked_at + lease,
        cancel: cancel.clone(),
        state: State::Running,
        submitted_at: None,
        counters: counters.clone(),
    });
    if !held {
        bump(&counters.lease_lost, 1);
        tracing::debug!(subject = %doc.subject, "picked under a registration no longer trusted: not run, given back");
        // best effort (the token fences it): otherwise it comes back when
        // its lease runs out
        let (client, lease) = (shared.client.clone(), doc.lease.clone());
        tokio::spawn(async move {
            let _ = client
                .release(&lease.queue, std::slice::from_ref(&lease))
                .await;
        });
        return None;
    }
    Some(cancel)
}

/// Runs a held document's handler in its own task.
fn spawn(
    tasks: &mut JoinSet<()>,
    reg: &Registered,
    shared: &Shared,
    counters: &Arc<Counters>,
    doc: Document,
    cancel: CancellationToken,
) {
    let opts = &reg.options;
    let span = tracing::info_span!("fetchq.doc", queue = %opts.queue, subject = %doc.subject,
        version = doc.version, attempt = doc.attempts, handler = %opts.name());
    let ctx = Context {
        client: shared.client.clone(),
        lease: doc.lease.clone(),
        cancel: cancel.clone(),
        span: span.clone(),
        metrics: Default::default(),
    };
    let recorded = ctx.clone();
    let lease = doc.lease.clone();
    let future = reg.handler.call(doc, ctx);
    let (max_runtime, version, migrate_to) = (opts.max_runtime, opts.version, opts.migrate_to);
    let shared = shared.clone();
    let counters = counters.clone();
    // counted in flight until handed over (or given up), however the task
    // ends: aborted before it first runs too (the guard lives in its future)
    bump(&counters.in_flight, 1);
    let in_flight = InFlight(counters.clone());
    tasks.spawn(
        async move {
            let _in_flight = in_flight;
            // the handler runs in its own task: a panic is caught, not spread,
            // and a handler that blocks its thread (never reaching an await)
            // cannot keep this task from enforcing the max runtime or from
            // being aborted at shutdown; the guard aborts it with this task
            let started = Instant::now();
            let handle = AbortOnDrop(tokio::spawn(future.in_current_span()));
            let outcome = tokio::select! {
                outcome = run_handler(handle, max_runtime, &cancel, &counters) => outcome,
                // cancelled (its lease lost, or shutdown out of time) and not
                // back within cancel_wait: dropping the handler's future
                // aborts its task, so it does not run on beside the worker
                // its document went to
                () = cancelled_for(&cancel, shared.lost_wait) => {
                    tracing::warn!(wait = ?shared.lost_wait,
                        "a cancelled handler did not return in time: aborted");
                    Outcome::reject("the handler was cancelled and did not return in time: aborted")
                }
            };
            shared
                .telemetry
                .handled(&counters, outcome.kind(), started.elapsed());
            if shared.deadline.is_cancelled() && matches!(outcome, Outcome::Reject { .. }) {
                // cut short by shutdown, which is not the document's fault: it
                // stays held (running) and the drain releases it, so no attempt
                // is burned and nothing is logged against it
                tracing::debug!("stopped by shutdown: the document will be released");
                return;
            }
            if !shared.registry.submit(&lease) {
                // the lease was lost meanwhile (already counted): discard
                shared.registry.remove(&lease);
                return;
            }
            tracing::debug!(outcome = outcome.kind(), "handled");
            // back-pressure: the slot stays taken until the outcome has a place
            let slot = tokio::select! {
                s = shared.slots.clone().acquire_owned() => s,
                _ = shared.hard.cancelled() => {
                    shared.registry.remove(&lease);
                    return;
                }
            };
            let Ok(slot) = slot else {
                shared.registry.remove(&lease);
                return;
            };
            let resolution = Resolution {
                lease,
                outcome,
                metrics: recorded.take_metrics(),
                version,
                migrate_to,
                counters,
                _slot: slot,
            };
            if let Err(unsent) = shared.outcomes.send(resolution).await {
                shared.registry.remove(&unsent.0.lease);
            }
        }
        .instrument(span),
    );
}

/// Takes a document off the in-flight count when dropped.
struct InFlight(Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A handler's task, aborted when dropped (the document's task was aborted,
/// or the handler ran past its max runtime).
struct AbortOnDrop(tokio::task::JoinHandle<Result<Outcome, HandlerError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Returns `wait` after `cancel` fires.
async fn cancelled_for(cancel: &CancellationToken, wait: Duration) {
    cancel.cancelled().await;
    tokio::time::sleep(wait).await;
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
        // only this task aborts the handler's, and it does not wait on it then
        Err(_) => Outcome::reject("handler task was cancelled"),
    }
}

/// Shutdown: wait for in-flight handlers until the deadline; then fire their
/// cancellation tokens, give them `cancel_wait` to return, abort the rest and
/// release their documents (attempts not burned). Forced or out of time: the
/// documents come back as orphans after their lease.
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
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            _ = shared.deadline.cancelled() => break,
        }
    }
    if !tasks.is_empty() {
        // the deadline token is the parent of every handler's token
        tracing::warn!(handler = %name, left = tasks.len(), "shutdown deadline: cancelling the rest");
        let wait = tokio::time::sleep(shared.cancel_wait);
        tokio::pin!(wait);
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = &mut wait => break,
                _ = shared.hard.cancelled() => break,
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let mut by_queue: std::collections::HashMap<String, Vec<Lease>> =
        std::collections::HashMap::new();
    for lease in leases.into_iter().filter(|l| shared.registry.is_running(l)) {
        by_queue.entry(lease.queue.clone()).or_default().push(lease);
    }
    for (queue, leases) in by_queue {
        if shared.hard.is_cancelled() {
            tracing::warn!(handler = %name, left = leases.len(), "out of time: unfinished documents come back after their lease");
        } else {
            let released = tokio::select! {
                r = shared.client.release(&queue, &leases) => r,
                _ = shared.hard.cancelled() => Err(fetchq_core::Error::Database(sqlx::Error::PoolTimedOut)),
            };
            match released {
                Ok(released) => {
                    bump(&counters.released, released.len() as u64);
                    tracing::info!(handler = %name, released = released.len(), "gave back unfinished documents");
                }
                Err(e) => {
                    tracing::warn!(handler = %name, error = %e, "could not give documents back: they return after their lease")
                }
            }
        }
        for lease in &leases {
            shared.registry.remove(lease);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_picks_fill_the_slots_within_the_connections() {
        // one pick serves every slot
        assert_eq!(parallel_picks(8, 100, 20, 1), 1);
        assert_eq!(parallel_picks(8, 8, 20, 1), 1);
        // picks of one, side by side
        assert_eq!(parallel_picks(8, 1, 20, 1), 8);
        assert_eq!(parallel_picks(32, 1, 20, 1), 10);
        assert_eq!(parallel_picks(32, 1, 64, 1), MAX_PARALLEL_PICKS);
        assert_eq!(parallel_picks(32, 10, 64, 1), 4);
        // a small pool keeps connections for the heartbeat and the writer
        assert_eq!(parallel_picks(32, 1, 4, 1), 2);
        assert_eq!(parallel_picks(32, 1, 1, 1), 1);
        // handlers share half the connections
        assert_eq!(parallel_picks(32, 1, 20, 2), 5);
        assert_eq!(parallel_picks(32, 1, 4, 2), 1);
        assert_eq!(parallel_picks(32, 1, 20, 3), 3);
        // each keeps one pick, however many there are
        assert_eq!(parallel_picks(32, 1, 4, 8), 1);
        assert_eq!(parallel_picks(32, 1, 4, 0), 2);
    }

    #[test]
    fn idle_wait_sleeps_until_the_next_due_document_within_bounds() {
        let poll = Duration::from_secs(1);
        assert_eq!(idle_wait(None, poll), poll);
        assert_eq!(idle_wait(Some(Duration::from_secs(9)), poll), poll);
        assert_eq!(
            idle_wait(Some(Duration::from_millis(300)), poll),
            Duration::from_millis(300)
        );
        assert_eq!(idle_wait(Some(Duration::ZERO), poll), MIN_IDLE_WAIT);
    }

    #[test]
    fn idle_wait_never_exceeds_an_idle_poll_shorter_than_the_minimum() {
        // `Duration::clamp(MIN_IDLE_WAIT, idle_poll)` panicked here
        let poll = Duration::from_millis(1);
        assert_eq!(idle_wait(Some(Duration::ZERO), poll), poll);
        assert_eq!(idle_wait(Some(Duration::from_secs(3)), poll), poll);
        assert_eq!(idle_wait(None, poll), poll);
    }
}
