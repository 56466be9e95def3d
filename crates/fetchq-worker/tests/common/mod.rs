//! Helpers shared by the runtime's integration tests.

#![allow(dead_code)] // each test file uses a part

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fetchq_core::Client;
use fetchq_worker::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome};
use serde_json::Value;

/// A handler's future, boxed.
pub type Fut = Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send>>;

/// A handler made of options and a closure.
pub struct FnHandler<F> {
    options: HandlerOptions,
    f: F,
}

#[async_trait]
impl<F> Handler for FnHandler<F>
where
    F: Fn(Doc<Value>, Context) -> Fut + Send + Sync + 'static,
{
    type Payload = Value;
    fn options(&self) -> HandlerOptions {
        self.options.clone()
    }
    async fn handle(&self, doc: Doc<Value>, ctx: Context) -> Result<Outcome, HandlerError> {
        (self.f)(doc, ctx).await
    }
}

/// A handler running `f` with `options`.
pub fn handler<F>(options: HandlerOptions, f: F) -> FnHandler<F>
where
    F: Fn(Doc<Value>, Context) -> Fut + Send + Sync + 'static,
{
    FnHandler { options, f }
}

/// Polls `check` until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fu>(within: Duration, what: &str, check: F)
where
    F: Fn() -> Fu,
    Fu: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How many documents of `queue` have `status` (a real count).
pub async fn count(client: &Client, queue: &str, status: i32) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM fetchq_data.{queue}__docs WHERE status = $1"
    ))
    .bind(status)
    .fetch_one(client.pool())
    .await
    .unwrap()
}

/// The error-log messages of one document.
pub async fn error_logs(client: &Client, queue: &str, subject: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT message::text FROM fetchq_data.{queue}__logs WHERE subject = $1"
    ))
    .bind(subject)
    .fetch_all(client.pool())
    .await
    .unwrap()
}

/// A loopback port nobody listens on (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
