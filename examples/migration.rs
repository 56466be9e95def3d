//! Documents move from version 0 to version 1 while both versions run.
//!
//! Run with
//! ```not_rust
//! cargo run --example migration
//! ```
//! Version 0 payloads hold a full `name`; version 1 wants `first` and `last`.
//! A migration handler picks version 0, upgrades the payload and moves the
//! document to version 1, where the version-1 handler processes it. No document
//! is ever seen by the wrong version.

mod common;

use std::time::Duration;

use fetchq::{Doc, NewDoc, Outcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct HeroV0 {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct HeroV1 {
    first: String,
    last: String,
}

#[fetchq::handler(queue = "heroes", version = 0, migrate_to = 1, concurrency = 4)]
async fn upgrade(doc: Doc<HeroV0>) -> fetchq::Result<Outcome> {
    let (first, last) = doc
        .payload
        .name
        .split_once(' ')
        .unwrap_or((&doc.payload.name, ""));
    let v1 = HeroV1 {
        first: first.into(),
        last: last.into(),
    };
    Outcome::upgrade().with_payload_from(&v1)
}

#[fetchq::handler(queue = "heroes", version = 1, concurrency = 4)]
async fn greet(doc: Doc<HeroV1>) -> fetchq::Result<Outcome> {
    println!(
        "  v1: hello {} (of the {} family)",
        doc.payload.first, doc.payload.last
    );
    Ok(Outcome::complete())
}

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    let client = common::setup().await?;
    client.queue_create("heroes").await?;
    let names = [
        "Tony Stark",
        "Bruce Banner",
        "Natasha Romanoff",
        "Steve Rogers",
        "Clint Barton",
    ];
    let docs: Vec<NewDoc> = names
        .iter()
        .map(|n| {
            NewDoc::new(n.to_lowercase().replace(' ', "_"))
                .version(0)
                .payload(serde_json::json!({"name": n}))
        })
        .collect();
    println!(
        "pushed {} version-0 documents",
        client.push_many("heroes", &docs).await?
    );

    let runtime = fetchq::Runtime::new(client.clone())
        .register(upgrade)
        .register(greet);
    let stats = runtime.stats();
    let c = client.clone();
    common::run_until(runtime, Duration::from_secs(20), move || {
        let c = c.clone();
        async move {
            c.metric_compute("heroes")
                .await
                .is_ok_and(|s| s.completed == s.total)
        }
    })
    .await?;
    let s = stats.snapshot();
    println!(
        "\nmigrated {} documents to version 1; version 1 completed {}",
        s.get("heroes@v0").map_or(0, |h| h.migrated),
        s.get("heroes@v1").map_or(0, |h| h.completed)
    );
    Ok(())
}
