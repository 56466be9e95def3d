//! The superheroes crawler of the FetchQ book, as a worker process.
//!
//! Run with
//! ```not_rust
//! cargo run --example crawler            # runs 10 seconds, then shuts down
//! cargo run --example crawler -- 0       # runs until Ctrl-C
//! ```
//! With no `DATABASE_URL` it starts (or reuses) a private PostgreSQL in
//! `.fetchq/pg` and says how to stop it. Start it in several terminals at once:
//! the processes share the work, and no profile is ever scraped by two of them.
//!
//! Profiles are unique subjects: each scrape discovers linked profiles, pushed
//! every time but queued once. Every profile is scraped again "every second day"
//! (two seconds here); a profile that answers 404 is rejected until
//! `max_attempts` makes it dead, so it is never tried again.

use std::time::Duration;

use fetchq::embedded::DefaultDatabase;
use fetchq::{
    Client, Context, Doc, Handler, HandlerError, HandlerOptions, NewDoc, Outcome, Runtime,
    async_trait,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Profile {
    #[serde(default)]
    visits: u32,
    #[serde(default)]
    last_score: u32,
}

const HEROES: &[&str] = &[
    "ironman",
    "hulk",
    "thor",
    "black_widow",
    "captain_america",
    "hawkeye",
    "vision",
    "deleted_hero",
];

/// A deterministic stand-in for an HTTP scrape: (score, linked profiles), or
/// `None` for a 404.
fn scrape(hero: &str) -> Option<(u32, Vec<&'static str>)> {
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

struct ScrapeProfile;

#[async_trait]
impl Handler for ScrapeProfile {
    type Payload = Profile;

    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("avengers")
            .concurrency(4)
            .lease(Duration::from_secs(30))
    }

    async fn handle(&self, doc: Doc<Profile>, ctx: Context) -> Result<Outcome, HandlerError> {
        let Some((score, links)) = scrape(&doc.subject) else {
            return Err(
                HandlerError::new("HTTP 404").with_details(serde_json::json!({"status": 404}))
            );
        };
        for link in links {
            if ctx.client().push("avengers", &NewDoc::new(link)).await? {
                tracing::info!(from = %doc.subject, to = link, "discovered a new profile");
            }
        }
        let profile = Profile {
            visits: doc.payload.visits + 1,
            last_score: score,
        };
        tracing::info!(hero = %doc.subject, visits = profile.visits, score, "scraped");
        Ok(Outcome::reschedule_in(Duration::from_secs(2)).with_payload_from(&profile)?)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let database = DefaultDatabase::resolve()?;
    println!("{}", database.describe());
    let client = Client::connect(database.url()).await?;
    client.migrate().await?;
    client.queue_create("avengers").await?;
    client.queue_set_max_attempts("avengers", 3).await?;
    client
        .queue_set_retry_backoff(
            "avengers",
            Duration::from_millis(300),
            Duration::from_secs(2),
            0.0,
        )
        .await?;
    client.push("avengers", &NewDoc::new("ironman")).await?;

    let runtime = Runtime::new(client.clone())
        .register(ScrapeProfile)
        .shutdown_timeout(Duration::from_secs(5));
    let (stop, stats) = (runtime.shutdown_token(), runtime.stats());
    if seconds > 0 {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.cancel();
        });
    }
    runtime.run().await?;

    client.metric_log_pack().await?;
    let c = client.metric_get_common("avengers").await?;
    let s = stats.total();
    println!(
        "\nthis process: {} picked, {} rescheduled, {} rejected\n\
         avengers: {} profiles ({} planned, {} pending, {} dead)",
        s.picked, s.rescheduled, s.rejected, c.total, c.planned, c.pending, c.dead
    );
    Ok(())
}
