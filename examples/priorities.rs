//! Priority partitions, and a planned time in the past jumping the line.
//!
//! Run with
//! ```not_rust
//! cargo run --example priorities
//! ```
//! Due documents are picked by priority (higher first), then by planned time
//! (older first): the priority-10 documents go first, then a priority-0
//! document planned a day ago, then the rest in the order they were pushed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use fetchq::{Context, Doc, Handler, HandlerError, HandlerOptions, NewDoc, Outcome, async_trait};

/// Records the order documents are handled in (one at a time).
struct Record(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Handler for Record {
    type Payload = serde_json::Value;
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new("printer").concurrency(1).batch(1)
    }
    async fn handle(
        &self,
        doc: Doc<serde_json::Value>,
        _ctx: Context,
    ) -> Result<Outcome, HandlerError> {
        self.0
            .lock()
            .map_err(|_| HandlerError::new("poisoned"))?
            .push(doc.subject);
        Ok(Outcome::complete())
    }
}

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    let client = common::setup().await?;
    client.queue_drop("printer").await?;
    client.queue_create("printer").await?;
    let now = Utc::now();
    let mut docs = Vec::new();
    for i in 0..5 {
        // pushed in order, each a second apart in the past
        docs.push(NewDoc::new(format!("normal-{i}")).at(now - chrono::Duration::seconds(10 - i)));
    }
    docs.push(
        NewDoc::new("urgent-a")
            .priority(10)
            .at(now - chrono::Duration::seconds(1)),
    );
    docs.push(NewDoc::new("urgent-b").priority(10));
    docs.push(NewDoc::new("backdated").at(now - chrono::Duration::days(1)));
    client.push_many("printer", &docs).await?;

    let order = Arc::new(Mutex::new(Vec::new()));
    let runtime = fetchq::Runtime::new(client.clone()).register(Record(order.clone()));
    let seen = order.clone();
    let total = docs.len();
    common::run_until(runtime, Duration::from_secs(20), move || {
        let done = seen.lock().map(|o| o.len() >= total).unwrap_or(true);
        async move { done }
    })
    .await?;
    let order = order.lock().map(|o| o.clone()).unwrap_or_default();
    println!("\nhandled in this order:");
    for (i, subject) in order.iter().enumerate() {
        println!("  {}. {subject}", i + 1);
    }
    Ok(())
}
