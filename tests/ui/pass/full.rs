//! Every key, a typed payload, a context, called directly and registered.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Profile {
    handle: String,
    last_score: u32,
}

/// Scrapes a profile every second day.
#[fetchq::handler(
    queue = "avengers",
    version = 1,
    concurrency = 8,
    batch = 4,
    lease = "5m",
    idle_poll = "500ms",
    max_runtime = "1h30m",
    name = "scraper"
)]
async fn scrape(doc: fetchq::Doc<Profile>, ctx: fetchq::Context) -> fetchq::Result<fetchq::Outcome> {
    let _ = (&doc.payload.handle, doc.payload.last_score, ctx.lease());
    Ok(fetchq::Outcome::reschedule_in(Duration::from_secs(2 * 86_400)))
}

#[fetchq::handler(queue = "avengers", version = 0, migrate_to = 1, max_runtime = "none")]
async fn upgrade(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    fetchq::Outcome::upgrade().with_payload(doc.payload)
}

fn main() {
    use fetchq::Handler;
    let options = scrape.options();
    assert_eq!(options.name(), "scraper");
    assert_eq!(options.queue(), "avengers");
    assert_eq!(upgrade.options().name(), "avengers@v0");
    let _runtime = fetchq::Runtime::new("postgres://localhost/none").register(scrape).register(upgrade);
    // the function stays callable on its own
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _context = rt.enter();
    let pool = sqlx::PgPool::connect_lazy("postgres://localhost/none").unwrap();
    let lease = fetchq::Lease {
        queue: "avengers".into(),
        subject: "ironman".into(),
        token: uuid::Uuid::nil(),
        expires_at: chrono::Utc::now(),
    };
    let doc = fetchq::Doc {
        queue: "avengers".into(),
        subject: "ironman".into(),
        payload: Profile { handle: "tony".into(), last_score: 20 },
        version: 1,
        priority: 0,
        attempts: 1,
        iterations: 0,
        created_at: chrono::Utc::now(),
        last_iteration: None,
    };
    let ctx = fetchq::Context::new(fetchq::Client::new(pool), lease);
    let outcome = rt.block_on(scrape(doc, ctx)).unwrap();
    assert_eq!(outcome.kind(), "reschedule");
}
