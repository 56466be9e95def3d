//! A handler on a calendar: `cron`, `tz` and `subject`.

#[fetchq::handler(queue = "reports", cron = "0 3 * * *", tz = "Europe/Stockholm")]
async fn nightly(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Result<fetchq::Outcome> {
    let _ = doc;
    Ok(fetchq::Outcome::complete())
}

#[fetchq::handler(queue = "reports", version = 2, cron = "*/10 * * * * *", subject = "beat")]
async fn beat(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

#[fetchq::handler(queue = "reports", cron = "@hourly")]
async fn hourly(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

fn main() {
    use fetchq::Handler;
    let s = nightly.options().cron_schedule().unwrap().unwrap();
    assert_eq!((s.subject.as_str(), s.time_zone.as_str(), s.cron.as_str()), ("nightly", "Europe/Stockholm", "0 3 * * *"));
    let s = beat.options().cron_schedule().unwrap().unwrap();
    assert_eq!((s.subject.as_str(), s.time_zone.as_str(), s.version), ("beat", "UTC", 2));
    assert_eq!(s.name, "reports.beat");
    assert!(hourly.options().cron_schedule().unwrap().is_some());
}
