#![allow(clippy::unwrap_used)]
mod common;
use common::{ADMIN, Server};
use fetchq_core::NewDoc;
use serde_json::json;

#[tokio::test]
async fn probe_bulk() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    let t = std::time::Instant::now();
    for c in 0..100 {
        let docs: Vec<NewDoc> = (0..1000)
            .map(|i| NewDoc::new(format!("s{c:03}-{i:04}")))
            .collect();
        s.db.client.push_many("q", &docs).await.unwrap();
    }
    println!("push 100k: {:?}", t.elapsed());
    for (action, f) in [
        ("kill", json!({})),
        ("play", json!({"status": "dead"})),
        ("play", json!({})),
        ("drop", json!({})),
    ] {
        let t = std::time::Instant::now();
        let (st, b) = s
            .post(
                "/api/v1/queues/q/docs:bulk",
                ADMIN,
                json!({"filter": f, "action": action}),
            )
            .await;
        println!("{action} {f}: {st} {b} in {:?}", t.elapsed());
    }
}
