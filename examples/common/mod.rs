//! What every example does first: logs, and a migrated database (DATABASE_URL,
//! or the private PostgreSQL in .fetchq/pg, started or reused).

#![allow(dead_code)] // compiled into every example; not each uses every helper

use fetchq::Client;
use fetchq::embedded::DefaultDatabase;

pub type BoxError = Box<dyn std::error::Error>;

/// Logs at `info` (or `RUST_LOG`), then a client on a migrated database.
pub async fn setup() -> Result<Client, BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let database = DefaultDatabase::resolve()?;
    println!("{}", database.describe());
    let client = Client::connect(database.url()).await?;
    client.migrate().await?;
    Ok(client)
}

/// Runs `runtime` until `done` says the example's work is over (checked every
/// 100 ms), or for `limit` at most; then shuts it down gracefully.
pub async fn run_until<F, Fut>(
    runtime: fetchq::Runtime,
    limit: std::time::Duration,
    done: F,
) -> Result<(), BoxError>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = runtime.shutdown_token();
    let watch = stop.clone();
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        while !done().await && start.elapsed() < limit && !watch.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        watch.cancel();
    });
    runtime.run().await?;
    Ok(())
}
