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

/// Records (level, message) of every event of the worker crate.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCapture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !event.metadata().target().starts_with("fetchq_worker") {
            return;
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), m.0));
    }
}

impl LogCapture {
    /// Events at `level` whose message contains `needle`.
    pub fn count(&self, level: tracing::Level, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, m)| *l == level && m.contains(needle))
            .count()
    }
}

/// A TCP link to the test server that can be cut and restored like a
/// network cable: while cut, connections stay open and nothing flows either
/// way (bytes wait in the kernel), new connections are accepted but not
/// forwarded; restored, everything flows again.
pub struct Link {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    down: tokio::sync::watch::Sender<bool>,
}

impl Link {
    /// A link to the server behind `db`.
    pub async fn start(db: &fetchq_testing::TestDb) -> Self {
        let opts: sqlx::postgres::PgConnectOptions = db.url().parse().expect("the test URL");
        let upstream = format!("{}:{}", opts.get_host(), opts.get_port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let (down, is_down) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *is_down.borrow() {
                    // refused, as by a server that is restarting
                    drop(inbound);
                    continue;
                }
                let (upstream, mut watch) = (upstream.clone(), watch.clone());
                let mut is_down = is_down.clone();
                tokio::spawn(async move {
                    if wait_restored(&mut watch).await.is_err() {
                        return;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    // taken down: both sockets are dropped (closed)
                    tokio::select! {
                        _ = async { tokio::join!(pump(ri, wo, watch.clone()), pump(ro, wi, watch)) } => {}
                        () = wait_down(&mut is_down) => {}
                    }
                });
            }
        });
        Self { port, cut, down }
    }

    /// Connection options through the link, for the database of `db`.
    pub fn options(&self, db: &fetchq_testing::TestDb) -> sqlx::postgres::PgConnectOptions {
        let opts: sqlx::postgres::PgConnectOptions = db.url().parse().expect("the test URL");
        opts.host("127.0.0.1").port(self.port)
    }

    /// A lazy pool of 6 connections through the link (a connection waits at
    /// most 1 s), for the database of `db`.
    pub fn pool(&self, db: &fetchq_testing::TestDb) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(self.options(db))
    }

    /// Cuts the link: nothing flows until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Takes the server down as a restart does: every connection is closed
    /// at once and new ones are closed as soon as they are accepted, until
    /// [`up`](Self::up).
    pub fn down(&self) {
        self.down.send_replace(true);
    }

    /// The server is back: new connections are forwarded again.
    pub fn up(&self) {
        self.down.send_replace(false);
    }
}

/// Returns once the link is taken down (never once the link is gone).
async fn wait_down(watch: &mut tokio::sync::watch::Receiver<bool>) {
    while !*watch.borrow_and_update() {
        if watch.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Waits while the link is cut; Err once the link is gone.
async fn wait_restored(
    watch: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    while *watch.borrow_and_update() {
        watch.changed().await?;
    }
    Ok(())
}

/// Copies one direction, holding bytes while the link is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut watch: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if wait_restored(&mut watch).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // cut while reading: the bytes wait until it is restored
        if wait_restored(&mut watch).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
