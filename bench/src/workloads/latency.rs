//! Idle latency: documents pushed one by one into an idle worker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::{Client, NewDoc};
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome, Runtime};
use serde_json::Value;
use sqlx::PgPool;

use super::{BoxError, quantile};
use crate::Row;
use crate::server::Server;

struct Stamp {
    started: Arc<Mutex<Vec<(String, Instant)>>>,
}

#[async_trait]
impl Handler for Stamp {
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        // polling alone would take 5 s: the notification does the work
        HandlerOptions::new("bench")
            .concurrency(8)
            .idle_poll(Duration::from_secs(5))
    }
    async fn handle(&self, doc: Doc<Value>, _ctx: Context) -> Result<Outcome, HandlerError> {
        if let Ok(mut s) = self.started.lock() {
            s.push((doc.subject, Instant::now()));
        }
        Ok(Outcome::complete())
    }
}

/// Documents pushed one by one at ~200/s into an idle worker: time from the
/// push call to the handler's start (LISTEN/NOTIFY wake-up).
pub(crate) async fn idle_latency(server: &Server, docs: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!("idle latency: {docs} documents at ~200/s ...");
    let (pool, _) = server.database("bench_latency", 20).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    let started = Arc::new(Mutex::new(Vec::new()));
    let runtime = Runtime::new(pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .register(Stamp {
            started: started.clone(),
        });
    let stop = runtime.shutdown_token();
    let run = tokio::spawn(runtime.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pushed = Vec::with_capacity(docs);
    let mut push_ms = Vec::with_capacity(docs);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..docs {
        tick.tick().await;
        let subject = format!("l{i}");
        let at = Instant::now();
        client.push("bench", &NewDoc::new(subject.as_str())).await?;
        push_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        pushed.push((subject, at));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.lock().map(|s| s.len()).unwrap_or(0) < docs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    run.await??;
    let started: std::collections::HashMap<String, Instant> = started
        .lock()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let mut lat: Vec<f64> = pushed
        .iter()
        .filter_map(|(s, at)| started.get(s).map(|t| (*t - *at).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    push_ms.sort_by(f64::total_cmp);
    let baseline = baseline_notify(&pool, 200).await?;
    pool.close().await;
    let note = format!(
        "{} of {docs} started; baseline: bare NOTIFY to LISTEN round trip",
        lat.len()
    );
    Ok(vec![
        Row {
            workload: "idle latency p50".into(),
            fetchq: quantile(&lat, 0.5),
            baseline: Some(baseline.0),
            unit: "ms",
            note: note.clone(),
        },
        Row {
            workload: "idle latency p99".into(),
            fetchq: quantile(&lat, 0.99),
            baseline: Some(baseline.1),
            unit: "ms",
            note,
        },
        // the part the worker cannot shorten: the push's own round trip,
        // whose commit waits for its WAL flush on this disk
        Row {
            workload: "idle latency: the push call alone, p50".into(),
            fetchq: quantile(&push_ms, 0.5),
            baseline: None,
            unit: "ms",
            note: "included in the latency above; the commit waits for its WAL flush".into(),
        },
        Row {
            workload: "idle latency: the push call alone, p99".into(),
            fetchq: quantile(&push_ms, 0.99),
            baseline: None,
            unit: "ms",
            note: "included in the latency above; the commit waits for its WAL flush".into(),
        },
    ])
}

/// p50/p99 of a bare NOTIFY reaching a LISTEN connection.
async fn baseline_notify(pool: &PgPool, n: usize) -> Result<(f64, f64), BoxError> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen("bench_ping").await?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let at = Instant::now();
        sqlx::query("SELECT pg_notify('bench_ping', 'x')")
            .execute(pool)
            .await?;
        listener.recv().await?;
        lat.push(at.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lat.sort_by(f64::total_cmp);
    Ok((quantile(&lat, 0.5), quantile(&lat, 0.99)))
}
