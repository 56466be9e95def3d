#[fetchq::handler(queue = "avengers")]
async fn scrape<T: serde::de::DeserializeOwned + Send + 'static>(doc: fetchq::Doc<T>) -> fetchq::Result<fetchq::Outcome> {
    let _ = doc;
    Ok(fetchq::Outcome::complete())
}

fn main() {}
