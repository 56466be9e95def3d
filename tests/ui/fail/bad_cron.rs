#[fetchq::handler(queue = "reports", cron = "0 25 * * *")]
async fn bad_hour(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

#[fetchq::handler(queue = "reports", cron = "* * *")]
async fn too_few_fields(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

#[fetchq::handler(queue = "reports", cron = "0 0 30 2 *")]
async fn never(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

#[fetchq::handler(queue = "reports", cron = "@daily", tz = "Europe/Atlantis")]
async fn bad_zone(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

#[fetchq::handler(queue = "reports", tz = "UTC")]
async fn tz_without_cron(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

fn main() {}
