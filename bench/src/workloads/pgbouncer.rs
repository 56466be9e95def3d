//! PgBouncer: push and drain through a private PgBouncer (transaction
//! pooling, `Client::transaction_pooling` / `Runtime::transaction_pooling`,
//! LISTEN on a direct `listen_url`), and push through it in session mode,
//! each against the same workload directly on PostgreSQL in the same run.

use std::time::{Duration, Instant};

use fetchq_core::Client;
use fetchq_testing::pgbouncer::{BouncerOptions, PgBouncer, PoolMode};
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use super::{BoxError, docs, run_clients};
use crate::Row;
use crate::server::Server;

/// Pushing clients and client connections; the bouncers get two server
/// connections more, so the rows measure the hop and the transaction
/// wrapping, not a queue for server connections.
const CLIENTS: usize = 8;
const DRAIN_CONCURRENCY: usize = 32;

struct NoOp;

#[fetchq_worker::async_trait]
impl fetchq_worker::Handler for NoOp {
    type Payload = serde_json::Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("bench")
            .concurrency(DRAIN_CONCURRENCY)
            .batch(DRAIN_CONCURRENCY)
    }
    async fn handle(
        &self,
        _doc: fetchq_worker::Doc<serde_json::Value>,
        _ctx: fetchq_worker::Context,
    ) -> Result<Outcome, fetchq_worker::HandlerError> {
        Ok(Outcome::complete())
    }
}

fn bouncer(url: &str, mode: PoolMode) -> Result<PgBouncer, BoxError> {
    let bin = fetchq_testing::pgbouncer::binary()
        .ok_or("the pgbouncer workload needs pgbouncer (apt-get install pgbouncer)")?;
    let opts = BouncerOptions {
        mode,
        pool_size: CLIENTS as u32 + 2,
        ..BouncerOptions::default()
    };
    Ok(PgBouncer::start_with(bin, url, &opts)?)
}

/// `total` single pushes from [`CLIENTS`] clients; docs/s.
async fn push(client: &Client, prefix: &str, total: usize) -> Result<f64, BoxError> {
    let start = Instant::now();
    run_clients(CLIENTS, |c| {
        let client = client.clone();
        let prefix = format!("{prefix}c{c}");
        async move {
            for doc in docs(&prefix, 0..total / CLIENTS) {
                client.push("bench", &doc).await?;
            }
            Ok::<(), fetchq_core::Error>(())
        }
    })
    .await?;
    Ok((total / CLIENTS * CLIENTS) as f64 / start.elapsed().as_secs_f64())
}

/// Drains the `docs` due documents of "bench" with one runtime; docs/s.
async fn drain(runtime: Runtime, docs: usize) -> Result<f64, BoxError> {
    let runtime = runtime
        .handle_signals(false)
        .maintenance(None)
        .max_connections(CLIENTS as u32)
        .register(NoOp);
    let (stop, stats) = (runtime.shutdown_token(), runtime.stats());
    let start = Instant::now();
    let run = tokio::spawn(runtime.run());
    while stats.total().completed < docs as u64 {
        if run.is_finished() {
            run.await??;
            return Err("the runtime stopped before the drain ended".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = docs as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    run.await??;
    Ok(rate)
}

async fn fill(client: &Client, prefix: &str, docs_n: usize) -> Result<(), BoxError> {
    for chunk in docs(prefix, 0..docs_n).chunks(1_000) {
        client.push_many("bench", chunk).await?;
    }
    Ok(())
}

pub(crate) async fn run(server: &Server, docs_n: usize) -> Result<Vec<Row>, BoxError> {
    let pushes = docs_n.min(16_000);
    eprintln!("pgbouncer: {pushes} pushes and {docs_n} drained, direct and through PgBouncer ...");
    let (pool, url) = server
        .database("bench_pgbouncer", CLIENTS as u32 + 2)
        .await?;
    let direct = Client::new(pool.clone());
    direct.migrate().await?;
    direct.queue_create("bench").await?;
    let tx_bouncer = bouncer(&url, PoolMode::Transaction)?;
    let session_bouncer = bouncer(&url, PoolMode::Session)?;
    let pooled = Client::connect_opts(
        &tx_bouncer.url(),
        &fetchq_core::ClientOptions::new()
            .max_connections(CLIENTS as u32)
            .transaction_pooling(true),
    )
    .await?;
    let session = Client::connect_with(&session_bouncer.url(), CLIENTS as u32).await?;

    // push: interleaved halves, so a drift of the host hits both sides
    let (mut d, mut t, mut s) = (0.0, 0.0, 0.0);
    for round in 0..2 {
        d += push(&direct, &format!("d{round}"), pushes / 2).await?;
        t += push(&pooled, &format!("t{round}"), pushes / 2).await?;
        s += push(&session, &format!("s{round}"), pushes / 2).await?;
    }
    let (push_direct, push_tx, push_session) = (d / 2.0, t / 2.0, s / 2.0);
    direct.queue_truncate("bench", true).await?;

    fill(&direct, "dd", docs_n).await?;
    let drain_direct = drain(Runtime::new(url.clone()), docs_n).await?;
    direct.queue_truncate("bench", true).await?;
    fill(&direct, "dt", docs_n).await?;
    let drain_tx = drain(
        Runtime::new(tx_bouncer.url())
            .transaction_pooling(true)
            .listen_url(url.clone()),
        docs_n,
    )
    .await?;
    pooled.pool().close().await;
    session.pool().close().await;
    pool.close().await;
    drop((tx_bouncer, session_bouncer));
    let note = format!(
        "baseline: the same directly on PostgreSQL; {} server connections",
        CLIENTS + 2
    );
    Ok(vec![
        Row {
            workload: format!("pgbouncer transaction mode: push-single, {CLIENTS} clients"),
            fetchq: push_tx,
            baseline: Some(push_direct),
            unit: "docs/s",
            note: format!("{pushes} pushes; each call BEGIN + unnamed statement + COMMIT; {note}"),
        },
        Row {
            workload: format!("pgbouncer session mode: push-single, {CLIENTS} clients"),
            fetchq: push_session,
            baseline: Some(push_direct),
            unit: "docs/s",
            note: format!("{pushes} pushes; the hop alone (cached statements); {note}"),
        },
        Row {
            workload: format!("pgbouncer transaction mode: drain, concurrency {DRAIN_CONCURRENCY}"),
            fetchq: drain_tx,
            baseline: Some(drain_direct),
            unit: "docs/s",
            note: format!("{docs_n} docs; listen_url direct; {note}"),
        },
    ])
}
