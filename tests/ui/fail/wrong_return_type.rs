#[fetchq::handler(queue = "avengers")]
async fn scrape(doc: fetchq::Doc<serde_json::Value>) -> String {
    doc.subject
}

fn main() {}
