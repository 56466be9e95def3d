#[fetchq::handler(queue = "avengers")]
async fn first(subject: String) -> fetchq::Result<fetchq::Outcome> {
    let _ = subject;
    Ok(fetchq::Outcome::complete())
}

#[fetchq::handler(queue = "avengers")]
async fn second(doc: fetchq::Doc<serde_json::Value>, client: fetchq::Client) -> fetchq::Result<fetchq::Outcome> {
    let _ = (doc, client);
    Ok(fetchq::Outcome::complete())
}

#[fetchq::handler(queue = "avengers")]
async fn third(doc: fetchq::Doc<u32>, ctx: fetchq::Context, extra: u8) -> fetchq::Result<fetchq::Outcome> {
    let _ = (doc, ctx, extra);
    Ok(fetchq::Outcome::complete())
}

#[fetchq::handler(queue = "avengers")]
async fn none() -> fetchq::Result<fetchq::Outcome> {
    Ok(fetchq::Outcome::complete())
}

fn main() {}
