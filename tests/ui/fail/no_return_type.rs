#[fetchq::handler(queue = "avengers")]
async fn scrape(doc: fetchq::Doc<serde_json::Value>) {
    let _ = doc;
}

fn main() {}
