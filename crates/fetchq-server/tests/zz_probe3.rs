#![allow(clippy::unwrap_used)]
mod common;
use common::{ADMIN, Server};
use fetchq_core::NewDoc;
use serde_json::json;
use sqlx::Row;

#[tokio::test]
async fn probe_plan() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    for c in 0..100 {
        let docs: Vec<NewDoc> = (0..1000)
            .map(|i| NewDoc::new(format!("s{c:03}-{i:04}")))
            .collect();
        s.db.client.push_many("q", &docs).await.unwrap();
    }
    sqlx::query("ANALYZE fetchq_data.q__docs")
        .execute(s.db.client.pool())
        .await
        .unwrap();
    let (st, b) = s
        .post(
            "/api/v1/queues/q/docs:bulk",
            ADMIN,
            json!({"filter": {}, "action": "kill"}),
        )
        .await;
    println!("{st} {b}");
    for q in [
        "EXPLAIN ANALYZE SELECT d.subject, d.status, d.version FROM fetchq_data.q__docs AS d WHERE true AND d.status = -1 AND d.subject > 's050' ORDER BY d.subject LIMIT 1000 FOR UPDATE SKIP LOCKED",
        "EXPLAIN ANALYZE SELECT d.subject, d.status, d.version FROM fetchq_data.q__docs AS d WHERE true AND d.status = -1 ORDER BY d.subject LIMIT 1000 FOR UPDATE SKIP LOCKED",
    ] {
        let rows = sqlx::query(q).fetch_all(s.db.client.pool()).await.unwrap();
        for r in rows {
            let l: String = r.get(0);
            println!("{l}");
        }
    }
}
