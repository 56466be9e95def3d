//! The superheroes crawler of the FetchQ book, as a worker process.
//!
//! Run with
//! ```not_rust
//! cargo run --example crawler            # runs 10 seconds, then shuts down
//! cargo run --example crawler -- 0       # runs until Ctrl-C
//! ```
//! Start it in several terminals at once: the processes share the work and no
//! profile is ever scraped by two of them.
//!
//! Profiles are unique subjects: each scrape discovers linked profiles, pushed
//! every time but queued once. Every profile is scraped again every second
//! "day" (a day lasts one second here). A profile that answers 404 is retried a
//! few times, then killed: it stays in the queue, so it is never pushed again.

mod common;

use std::time::Duration;

use fetchq::{Doc, NewDoc, Outcome};
use serde::{Deserialize, Serialize};

/// One "day" of the demo.
const DAY: Duration = Duration::from_secs(1);
/// 404s tolerated before a profile is killed.
const TRIES_ON_404: i32 = 3;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Profile {
    #[serde(default)]
    visits: u32,
    #[serde(default)]
    last_score: u32,
}

#[fetchq::handler(queue = "avengers", concurrency = 4, lease = "30s")]
async fn scrape(doc: Doc<Profile>, ctx: fetchq::Context) -> fetchq::Result<Outcome> {
    let Some((score, links)) = common::scrape_page(&doc.subject) else {
        if doc.attempts >= TRIES_ON_404 {
            tracing::warn!(hero = %doc.subject, "gone for good: killed");
            return Ok(Outcome::kill().with_payload(serde_json::json!({"gone": true})));
        }
        return Err(
            fetchq::HandlerError::new("HTTP 404").with_details(serde_json::json!({"status": 404}))
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
    Outcome::reschedule_in(2 * DAY).with_payload_from(&profile)
}

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let client = common::setup().await?;
    client.queue_create("avengers").await?;
    client
        .queue_set_retry_backoff(
            "avengers",
            Duration::from_millis(300),
            Duration::from_secs(2),
            0.0,
        )
        .await?;
    client.push("avengers", &NewDoc::new("ironman")).await?;

    let runtime = fetchq::Runtime::new(client.clone())
        .register(scrape)
        .shutdown_timeout(Duration::from_secs(5));
    let stats = runtime.stats();
    let limit = if seconds == 0 {
        Duration::MAX
    } else {
        Duration::from_secs(seconds)
    };
    common::run_until(runtime, limit, || async { false }).await?;

    client.metric_log_pack().await?;
    let c = client.metric_get_common("avengers").await?;
    let s = stats.total();
    println!(
        "\nthis process: {} picked, {} rescheduled, {} rejected, {} killed\n\
         avengers: {} profiles ({} planned, {} pending, {} dead)",
        s.picked, s.rescheduled, s.rejected, s.killed, c.total, c.planned, c.pending, c.dead
    );
    Ok(())
}
