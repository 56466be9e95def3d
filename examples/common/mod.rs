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

/// The superheroes of the FetchQ book; `deleted_hero` answers 404.
pub const HEROES: &[&str] = &[
    "ironman",
    "hulk",
    "thor",
    "black_widow",
    "captain_america",
    "hawkeye",
    "vision",
    "deleted_hero",
];

/// A deterministic stand-in for an HTTP scrape of a profile: (score, linked
/// profiles), or `None` for a 404.
pub fn scrape_page(hero: &str) -> Option<(u32, Vec<&'static str>)> {
    let i = HEROES.iter().position(|h| *h == hero)?;
    if hero == "deleted_hero" {
        return None;
    }
    let links = vec![
        HEROES[(i + 1) % HEROES.len()],
        HEROES[(i + 3) % HEROES.len()],
    ];
    Some((10 + i as u32 * 3, links))
}
