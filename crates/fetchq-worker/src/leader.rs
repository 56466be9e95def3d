//! Maintenance leadership: exactly one process at a time runs the maintenance
//! jobs (orphan rescue, retention, snapshots, counter packing), releases the
//! leases of workers whose registration lapsed, and fires the due cron
//! schedules. Leadership is a session advisory lock held on a
//! dedicated connection, so it moves to another process as soon as the
//! leader's connection dies.
//!
//! Behind a transaction pooler (PgBouncer in `pool_mode = transaction`) a
//! session lock would stay on whichever server connection ran it, and the
//! next client given that server connection would hold it too. There the lock
//! is taken on the runtime's direct connection (`Runtime::listen_url`) when
//! there is one, and otherwise as a transaction lock in a transaction the
//! leader keeps open: it holds one server connection of the pooler while it
//! leads (a follower's attempt is a short transaction).
//!
//! Schedules do not rely on the lock for correctness: a leader that lost its
//! lock mid-round (its connection died) may still run one round beside the new
//! leader, and [`Client::schedule_tick`] fires each tick once anyway (a
//! conditional update on the planned tick). The lock only keeps the work in
//! one place. Between rounds the leader sleeps until the earliest planned
//! tick (bounded by the maintenance interval), so ticks fire within some
//! milliseconds of their time, however long the interval; ticks missed while
//! no leader ran are collapsed into one.

use std::time::Duration;

use fetchq_core::Client;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::trouble::{Incidents, Trouble, is_older_schema};
use crate::vacuum::Vacuum;

/// How many schedules one round plans or fires at most (the rest wait for the
/// next round, the most overdue first).
const SCHEDULES_PER_ROUND: i32 = 100;

/// How long the leader waits before it looks again for the schedule functions
/// of a database whose schema is older than 18 (another process may migrate it).
const SCHEDULES_RECHECK: Duration = Duration::from_secs(60);

/// The shortest sleep before a tick between rounds (a tick due now, or a
/// clock a little off, never makes the leader spin).
const MIN_TICK_WAIT: Duration = Duration::from_millis(20);

/// Settings of the leader's session: how soon the server finds its link
/// dead (probes after 5 s idle, every 2 s, 3 lost: 11 s; unacknowledged data
/// for 15 s). Any user may set them.
const LINK_CHECKS: &str = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
     SET tcp_keepalives_count = 3; SET tcp_user_timeout = 15000";

/// How long a stopping leader waits to give its lock back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Advisory lock key of the maintenance leader.
const LEADER_KEY: i64 = 0x6665_7463_686d; // "fetchm"

/// Where and how the leader holds its lock.
#[derive(Debug, Clone)]
pub(crate) enum Lock {
    /// A session lock on a connection of its own to these options (the
    /// database itself, or a pooler in session mode).
    Session(PgConnectOptions),
    /// A transaction lock in a transaction kept open on a connection of its
    /// own through a transaction pooler.
    Transaction(PgConnectOptions),
}

/// Runs until `stop` fires. `interval` is how often the leader runs due jobs,
/// and how often a follower tries to become the leader.
pub(crate) async fn run(
    client: Client,
    lock: Lock,
    interval: Duration,
    reindex: bool,
    stop: CancellationToken,
    incidents: Incidents,
) {
    let mut trouble = Trouble::new("maintenance", &incidents);
    let in_transaction = matches!(lock, Lock::Transaction(_));
    loop {
        // the leader's connection, kept here so that a stop in the middle of
        // a round still gives the lock back before `run` returns
        let mut held = None;
        let led = tokio::select! {
            r = lead(&client, &lock, interval, reindex, &stop, &mut trouble, &mut held) => Some(r),
            _ = stop.cancelled() => None,
        };
        match led {
            // stopped
            None | Some(Ok(())) => {
                if let Some(conn) = held {
                    release(conn, in_transaction).await;
                }
                return;
            }
            Some(Err(e)) => {
                drop(held);
                let wait = trouble.failed(&e).max(interval);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Tries to lead; returns Ok when stopped, Err when the database failed.
async fn lead(
    client: &Client,
    lock: &Lock,
    interval: Duration,
    reindex: bool,
    stop: &CancellationToken,
    trouble: &mut Trouble,
    held: &mut Option<PgConnection>,
) -> Result<(), sqlx::Error> {
    let (options, in_transaction) = match lock {
        Lock::Session(o) => (o, false),
        Lock::Transaction(o) => (o, true),
    };
    let conn = held.insert(PgConnection::connect_with(options).await?);
    if !in_transaction {
        // the lock is freed only when the server ends this session: on a cut
        // link it would wait for the system's keepalive (two hours by
        // default) and no process could lead meanwhile; with these the
        // server gives up on the link within about 15 s (ignored on a Unix
        // socket)
        conn.execute(LINK_CHECKS).await?;
    }
    loop {
        let leader = try_lock(conn, in_transaction).await?;
        trouble.ok();
        if leader {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval * 5) => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
    tracing::info!("this process now runs fetchq maintenance");
    let mut vacuum = Vacuum::new(client.clone(), reindex);
    // set while the database has no schedules (schema below 18): when to look again
    let mut schedules_off: Option<tokio::time::Instant> = None;
    // set while the database has no worker registrations (schema below 21)
    let mut workers_off: Option<tokio::time::Instant> = None;
    loop {
        vacuum.round(trouble).await;
        match client.mnt_job_run(Duration::from_secs(300), 100).await {
            Ok(run) if !run.success => {
                tracing::warn!("a maintenance job failed; see fetchq.jobs.last_error");
            }
            Ok(_) => trouble.ok(),
            Err(e) => {
                trouble.failed(&e);
            }
        }
        // the leases of processes whose registration lapsed (schema 21)
        if workers_off.is_none_or(|at| tokio::time::Instant::now() >= at) {
            match client.mnt_rescue_workers().await {
                Ok(rescue) => {
                    workers_off = None;
                    if rescue.workers > 0 {
                        tracing::warn!(
                            workers = rescue.workers,
                            released = rescue.released,
                            "workers stopped renewing their registration: their documents were released"
                        );
                    }
                }
                Err(e) if is_older_schema(&e) => {
                    // older than 21: leases are rescued when they run out
                    workers_off = Some(tokio::time::Instant::now() + SCHEDULES_RECHECK);
                }
                Err(e) => {
                    trouble.failed(&e);
                }
            }
        }
        // after the jobs: a schedule whose tick is due now is fired in this
        // round, not one interval later
        let tick_now = schedules_off.is_none_or(|at| tokio::time::Instant::now() >= at);
        if tick_now {
            match client.schedule_tick(SCHEDULES_PER_ROUND).await {
                Ok(round) => {
                    if schedules_off.take().is_some() {
                        tracing::info!("the fetchq schema has schedules now; firing them");
                    }
                    if round.fired() > 0 || round.errors > 0 {
                        tracing::debug!(?round, "schedules");
                    }
                }
                Err(e) if is_older_schema(&e) => {
                    if schedules_off.is_none() {
                        tracing::warn!(error = %e,
                            "the fetchq schema is older than 18 (no schedules): cron schedules are off until it is migrated");
                    }
                    schedules_off = Some(tokio::time::Instant::now() + SCHEDULES_RECHECK);
                }
                Err(e) => {
                    trouble.failed(&e);
                }
            }
        }
        // until the next round, wake for each tick that comes due meanwhile:
        // a tick fires on time, not up to one interval late
        let round_end = tokio::time::Instant::now() + interval;
        loop {
            let mut until = round_end;
            if schedules_off.is_none() {
                match client.schedule_next_in().await {
                    Ok(Some(wait)) => {
                        until = until.min(tokio::time::Instant::now() + wait.max(MIN_TICK_WAIT));
                    }
                    Ok(None) => {}
                    // the round will report it; wait for it
                    Err(e) => tracing::debug!(error = %e, "cannot read the next tick"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = stop.cancelled() => return Ok(()),
            }
            if until >= round_end {
                break;
            }
            match client.schedule_tick(SCHEDULES_PER_ROUND).await {
                Ok(round) if round.fired() > 0 => tracing::debug!(?round, "schedules"),
                // nothing fired (busy, lost, failed): the rest waits for the round
                Ok(_) => break,
                Err(e) => {
                    trouble.failed(&e);
                    break;
                }
            }
        }
        // still holding the lock? (a dead connection lost it)
        conn.ping().await?;
    }
}

/// Gives the leader's lock back and closes its connection. Bounded: on an
/// unreachable server the connection is dropped (the server frees the lock
/// when it finds the link dead).
async fn release(mut conn: PgConnection, in_transaction: bool) {
    let unlock = async {
        if in_transaction {
            conn.execute("ROLLBACK").await?;
        } else {
            sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut conn)
                .await?;
        }
        conn.close().await
    };
    match tokio::time::timeout(RELEASE_TIMEOUT, unlock).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "giving the leader's lock back failed"),
        Err(_) => {
            tracing::debug!("giving the leader's lock back timed out; dropping its connection")
        }
    }
}

/// Tries to take the leader's lock on `conn`: a session lock, or (for a
/// transaction pooler) a transaction lock in a transaction left open when
/// taken and rolled back when not.
async fn try_lock(conn: &mut PgConnection, in_transaction: bool) -> Result<bool, sqlx::Error> {
    if !in_transaction {
        return sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_KEY)
            .fetch_one(&mut *conn)
            .await;
    }
    // unnamed statements: the pooler may hand the next transaction to
    // another server connection
    conn.execute("BEGIN").await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LEADER_KEY)
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    if !leader {
        conn.execute("ROLLBACK").await?;
    }
    Ok(leader)
}
