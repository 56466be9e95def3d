//! The REST API against the Rust client, in the same run: pushes in batches
//! of 1,000 through `POST /api/v1/queues/{queue}/docs` against
//! `Client::push_many`, and a pick → resolve loop from 8 HTTP clients against
//! the same loop through `Client::pick` and `Client::complete_many`.
//!
//! The server runs in this process on a loopback port; both sides take turns,
//! a quarter of the work each time, so the host's load weighs on both alike.

use std::time::{Duration, Instant};

use fetchq_core::{Client, PickOptions};
use serde_json::{Value, json};

use super::{BoxError, docs, run_clients};
use crate::Row;
use crate::server::Server;

const ROUNDS: usize = 4;
const PUSH_CLIENTS: usize = 4;
const WORK_CLIENTS: usize = 8;
/// Documents per pick in the work loop (both sides).
const PICK: i32 = 10;
const TOKEN: &str = "bench-secret";

/// A running `fetchq serve` on a random loopback port.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// The admin token of the bench's server.
pub(crate) const TOKEN_SECRET: &str = TOKEN;

impl Api {
    pub(crate) async fn start(client: Client) -> Result<Self, BoxError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let config = fetchq_server::Config {
            tokens: fetchq_server::Tokens::parse(&format!("admin={TOKEN}"))?,
            ..fetchq_server::Config::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(fetchq_server::serve(listener, client, config, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self { base, http, stop })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, BoxError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {body}").into());
        }
        Ok(body)
    }
}

/// Pushes through `POST .../docs` in batches of 1,000 from 4 clients, against
/// `Client::push_many` from 4 clients, same batches, turns taken.
pub(crate) async fn push(server: &Server, total: usize) -> Result<Row, BoxError> {
    eprintln!("http-push: {total} documents in batches of 1,000 ...");
    let (pool, _) = server.database("bench_http_push", 12).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("direct").await?;
    client.queue_create("http").await?;
    let api = std::sync::Arc::new(Api::start(client.clone()).await?);
    let all = docs("d", 0..total);
    let batches: Vec<Vec<fetchq_core::NewDoc>> = all.chunks(1_000).map(<[_]>::to_vec).collect();
    let bodies: Vec<Value> = batches
        .iter()
        .map(|batch| {
            let docs: Vec<Value> = (0..batch.len())
                .map(|i| json!({"subject": batch[i].subject(), "payload": {"i": i}}))
                .collect();
            json!({"mode": "push", "docs": docs})
        })
        .collect();
    let per_round = batches.len().div_ceil(ROUNDS).max(1);
    let (mut http, mut direct) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let range =
            (round * per_round).min(batches.len())..((round + 1) * per_round).min(batches.len());
        let round_bodies = std::sync::Arc::new(bodies[range.clone()].to_vec());
        let start = Instant::now();
        run_clients(PUSH_CLIENTS, |c| {
            let (api, bodies) = (api.clone(), round_bodies.clone());
            async move {
                for body in bodies.iter().skip(c).step_by(PUSH_CLIENTS) {
                    api.post("/api/v1/queues/http/docs", body)
                        .await
                        .map_err(to_io)?;
                }
                Ok::<(), std::io::Error>(())
            }
        })
        .await?;
        http += start.elapsed();
        let round_batches = std::sync::Arc::new(batches[range].to_vec());
        let start = Instant::now();
        run_clients(PUSH_CLIENTS, |c| {
            let (client, batches) = (client.clone(), round_batches.clone());
            async move {
                for batch in batches.iter().skip(c).step_by(PUSH_CLIENTS) {
                    client.push_many("direct", batch).await?;
                }
                Ok::<(), fetchq_core::Error>(())
            }
        })
        .await?;
        direct += start.elapsed();
    }
    client.metric_log_pack().await?;
    let (h, d) = (
        client.metric_get_common("http").await?.total,
        client.metric_get_common("direct").await?.total,
    );
    finish(api).await;
    pool.close().await;
    Ok(Row {
        workload: "http-push, batches of 1,000, POST .../docs".into(),
        fetchq: total as f64 / http.as_secs_f64(),
        baseline: Some(total as f64 / direct.as_secs_f64()),
        unit: "docs/s",
        note: format!(
            "baseline: Client::push_many, same batches; 4 clients, 4 turns each; goal >= 0.7; docs stored {h} / {d}"
        ),
    })
}

/// 8 HTTP clients looping pick (10) → resolve (complete) until the queue is
/// empty, against 8 Rust clients looping `pick` → `complete_many`.
pub(crate) async fn work(server: &Server, total: usize) -> Result<Row, BoxError> {
    eprintln!("http-work: {total} documents, {WORK_CLIENTS} clients, pick {PICK} ...");
    let (pool, _) = server.database("bench_http_work", 24).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    let api = std::sync::Arc::new(Api::start(client.clone()).await?);
    let share = total / ROUNDS;
    let (mut http, mut direct) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        for queue in ["http", "direct"] {
            let name = format!("{queue}{round}");
            client.queue_create(&name).await?;
            for chunk in docs("doc", 0..share).chunks(1_000) {
                client.push_many(&name, chunk).await?;
            }
        }
        let path = format!("/api/v1/queues/http{round}");
        let start = Instant::now();
        run_clients(WORK_CLIENTS, |_| {
            let (api, path) = (api.clone(), path.clone());
            async move {
                loop {
                    let picked = api
                        .post(&format!("{path}/pick"), &json!({"limit": PICK, "lease": "5m"}))
                        .await
                        .map_err(to_io)?;
                    let docs = picked["docs"].as_array().cloned().unwrap_or_default();
                    if docs.is_empty() {
                        return Ok::<(), std::io::Error>(());
                    }
                    let results: Vec<Value> = docs
                        .iter()
                        .map(|d| {
                            json!({"subject": d["subject"], "lease_token": d["lease_token"], "outcome": "complete"})
                        })
                        .collect();
                    api.post(&format!("{path}/resolve"), &json!({"results": results}))
                        .await
                        .map_err(to_io)?;
                }
            }
        })
        .await?;
        http += start.elapsed();
        let name = format!("direct{round}");
        let start = Instant::now();
        run_clients(WORK_CLIENTS, |_| {
            let (client, name) = (client.clone(), name.clone());
            async move {
                let options = PickOptions::new().limit(PICK);
                loop {
                    let docs = client.pick(&name, &options).await?;
                    if docs.is_empty() {
                        return Ok::<(), fetchq_core::Error>(());
                    }
                    let items: Vec<_> = docs.into_iter().map(|d| (d.lease, None)).collect();
                    client.complete_many(&name, &items).await?;
                }
            }
        })
        .await?;
        direct += start.elapsed();
    }
    client.metric_log_pack().await?;
    let mut completed = 0;
    for round in 0..ROUNDS {
        completed += client
            .metric_get_common(&format!("http{round}"))
            .await?
            .completed;
    }
    finish(api).await;
    pool.close().await;
    let done = (share * ROUNDS) as f64;
    Ok(Row {
        workload: "http-work, 8 clients, pick 10 + resolve".into(),
        fetchq: done / http.as_secs_f64(),
        baseline: Some(done / direct.as_secs_f64()),
        unit: "docs/s",
        note: format!(
            "baseline: Client::pick + complete_many, 8 clients; 4 turns each; goal >= 0.5; completed over HTTP {completed}"
        ),
    })
}

pub(crate) async fn finish(api: std::sync::Arc<Api>) {
    if let Ok(api) = std::sync::Arc::try_unwrap(api) {
        let _ = api.stop.send(());
    }
}

fn to_io(e: BoxError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
