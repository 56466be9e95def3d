#[fetchq::handler(queue = "avengers", version = "x")]
async fn scrape(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Result<fetchq::Outcome> {
    let _ = doc;
    Ok(fetchq::Outcome::complete())
}

fn main() {}
