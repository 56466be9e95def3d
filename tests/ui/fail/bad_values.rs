#[fetchq::handler(queue = "Bad Queue!", concurrency = 0, lease = "5 minutes", max_runtime = 30)]
async fn scrape(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Result<fetchq::Outcome> {
    let _ = doc;
    Ok(fetchq::Outcome::complete())
}

fn main() {}
