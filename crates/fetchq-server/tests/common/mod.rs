//! A server on a random port over a fresh test database.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use fetchq_server::{Config, Tokens};
use fetchq_testing::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ADMIN: &str = "admin-secret-1";
pub const READ: &str = "read-secret-1";
pub const PUSH: &str = "push-secret-1";
pub const WORK: &str = "work-secret-1";
pub const WORKER: &str = "worker-secret-1";

pub struct Server {
    pub db: TestDb,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub fn tokens() -> Tokens {
    Tokens::parse(&format!(
        "admin={ADMIN},read={READ},push={PUSH},work={WORK},push+work={WORKER}"
    ))
    .unwrap()
}

impl Server {
    pub async fn start() -> Self {
        Self::with_config(Config {
            tokens: tokens(),
            ..Config::default()
        })
        .await
    }

    pub async fn with_config(config: Config) -> Self {
        let db = TestDb::new().await;
        Self::on(db, config).await
    }

    pub async fn on(db: TestDb, config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = db.client.clone();
        let handle = tokio::spawn(fetchq_server::serve(listener, client, config, async move {
            let _ = rx.await;
        }));
        Self {
            db,
            addr,
            http: reqwest::Client::new(),
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request; answers the status and the JSON body (Null if none;
    /// a `text/plain` body as a JSON string).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let plain = res
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
        let text = res.text().await.unwrap();
        let json = if plain {
            Value::String(text) // GET /metrics: the Prometheus text format
        } else if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Sends raw bytes as the body with a JSON content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let res = self
            .http
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    /// Asks the server to shut down gracefully (does not wait).
    pub fn stop_signal(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}
