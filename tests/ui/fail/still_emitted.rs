//! With a wrong attribute the function is still there: only the attribute's
//! error shows, not "cannot find function" at every use.

#[fetchq::handler(queue = "avengers", concurency = 8)]
async fn scrape(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Result<fetchq::Outcome> {
    let _ = doc;
    Ok(fetchq::Outcome::complete())
}

fn main() {
    let _future = scrape;
}
