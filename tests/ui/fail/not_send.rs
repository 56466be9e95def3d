use std::rc::Rc;

#[fetchq::handler(queue = "avengers")]
async fn scrape(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Result<fetchq::Outcome> {
    let local = Rc::new(doc.subject);
    tokio::task::yield_now().await;
    let _ = local;
    Ok(fetchq::Outcome::complete())
}

fn main() {}
