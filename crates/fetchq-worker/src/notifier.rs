//! LISTEN for wake-ups: a document became pending, or a queue was resumed.
//! Notifications are hints that cut idle latency; pools still poll.
//!
//! LISTEN is session state: behind a transaction pooler it would be
//! registered on whichever server connection ran it, and notifications would
//! not come back. The runtime then listens on its direct connection
//! (`Runtime::listen_url`), or not at all (the pools poll).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::trouble::{Incidents, Trouble};

/// Channels the engine notifies on, with the queue name as payload.
const CHANNELS: [&str; 2] = ["fetchq_pending", "fetchq_queue_resume"];

/// Runs until `stop` fires, waking the pools of the notified queue. `pool`
/// gives the listener its connection (the runtime's pool, or a pool of one on
/// the direct URL).
pub(crate) async fn run(
    pool: PgPool,
    wakers: HashMap<String, Vec<Arc<Notify>>>,
    stop: CancellationToken,
    incidents: Incidents,
) {
    let mut trouble = Trouble::new("listening for notifications", &incidents);
    loop {
        let connected = tokio::select! {
            c = connect(&pool) => c,
            _ = stop.cancelled() => return,
        };
        let mut listener = match connected {
            Ok(l) => {
                trouble.ok();
                l
            }
            Err(e) => {
                let wait = trouble.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        // something may have become pending while we were not listening
        wake_all(&wakers);
        loop {
            let note = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.cancelled() => return,
            };
            match note {
                Ok(Some(n)) => {
                    for w in wakers.get(n.payload()).into_iter().flatten() {
                        w.notify_one();
                    }
                }
                // the connection dropped: reconnect, and poll meanwhile
                Ok(None) | Err(_) => {
                    trouble.failed(&"the notification connection was lost");
                    wake_all(&wakers);
                    break;
                }
            }
        }
    }
}

/// Listens on a connection of its own, outside `pool` (as the maintenance
/// leader's): a listener holds its connection for as long as it runs, which
/// would leave a pool of one connection nothing to pick, heartbeat or write
/// outcomes with, and a pool of two only one.
async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let mut listener = PgListener::connect_with(&own).await?;
    // this pool is the listener's alone: nobody closes it
    listener.ignore_pool_close_event(true);
    listener.listen_all(CHANNELS).await?;
    Ok(listener)
}

fn wake_all(wakers: &HashMap<String, Vec<Arc<Notify>>>) {
    for w in wakers.values().flatten() {
        w.notify_one();
    }
}
