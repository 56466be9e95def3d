//! The superheroes crawler of the FetchQ book, on the core client.
//!
//! Run with
//! ```not_rust
//! cargo run --example quickstart
//! ```
//! With no `DATABASE_URL` it starts (or reuses) a private PostgreSQL in
//! `.fetchq/pg` and says how to stop it.
//!
//! Profiles are unique subjects: scraping one discovers others, pushed again
//! and again but queued once. Every profile is scraped again "every second
//! day" (two seconds here), and a profile that answers 404 is rejected until
//! `max_attempts` makes it dead, so it is never tried again.

mod common;

use std::time::{Duration, Instant};

use fetchq::{NewDoc, PickOptions, Schedule};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    let client = common::setup().await?;

    client.queue_create("avengers").await?;
    client.queue_set_max_attempts("avengers", 3).await?;
    client
        .queue_set_retry_backoff(
            "avengers",
            Duration::from_millis(200),
            Duration::from_secs(1),
            0.0,
        )
        .await?;
    let seeded = client
        .push(
            "avengers",
            &NewDoc::new("ironman").payload(json!({"visits": 0})),
        )
        .await?;
    println!(
        "seeded ironman: {}",
        if seeded { "queued" } else { "already known" }
    );

    let started = Instant::now();
    let (mut scraped, mut discovered) = (0, 0);
    while started.elapsed() < Duration::from_secs(6) {
        let batch = client
            .pick(
                "avengers",
                &PickOptions::new().limit(10).lease(Duration::from_secs(30)),
            )
            .await?;
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for doc in batch {
            match common::scrape_page(&doc.subject).map(|(_, links)| links) {
                Some(links) => {
                    scraped += 1;
                    for link in links {
                        if client
                            .push("avengers", &NewDoc::new(link).payload(json!({"visits": 0})))
                            .await?
                        {
                            discovered += 1;
                            println!("  {} links to {link}: new profile queued", doc.subject);
                        }
                    }
                    let visits = doc.payload["visits"].as_i64().unwrap_or(0) + 1;
                    let next = Schedule::after(Duration::from_secs(2)); // "every second day"
                    client
                        .reschedule(&doc.lease, next, Some(&json!({"visits": visits})))
                        .await?;
                }
                None => {
                    println!("  {} answered 404 (attempt {})", doc.subject, doc.attempts);
                    client
                        .reject(
                            &doc.lease,
                            "HTTP 404",
                            Some(&json!({"status": 404})),
                            Some("quickstart"),
                        )
                        .await?;
                }
            }
        }
    }
    client.mnt().await?;
    let c = client.metric_get_common("avengers").await?;
    println!(
        "\nscraped {scraped} times, discovered {discovered} profiles\n\
         avengers: {} profiles, {} planned, {} pending, {} dead, {} rescheduled, {} rejected",
        c.total, c.planned, c.pending, c.dead, c.rescheduled, c.rejected
    );
    let dead = client.get("avengers", "deleted_hero").await?;
    println!(
        "deleted_hero is {:?}: it will not be tried again",
        dead.status
    );
    Ok(())
}
