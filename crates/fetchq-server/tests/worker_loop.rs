//! 10,000 documents, 4 concurrent HTTP workers: each processed exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{ADMIN, PUSH, Server, WORKER};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

#[tokio::test]
async fn four_http_workers_process_ten_thousand_documents_exactly_once() {
    let s = Arc::new(Server::start().await);
    let (st, _) = s
        .post("/api/v1/queues", ADMIN, json!({"name": "work"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    for batch in 0..10 {
        let docs: Vec<Value> = (0..1000)
            .map(
                |i| json!({"subject": format!("doc-{:05}", batch * 1000 + i), "payload": {"i": i}}),
            )
            .collect();
        let (st, body) = s
            .post("/api/v1/queues/work/docs", PUSH, json!({"docs": docs}))
            .await;
        assert_eq!(
            (st, body["queued"].as_u64()),
            (StatusCode::OK, Some(1000)),
            "{body}"
        );
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let s = Arc::clone(&s);
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let (st, picked) = s
                    .post("/api/v1/queues/work/pick", WORKER, json!({"limit": 100, "lease": "5m"}))
                    .await;
                assert_eq!(st, StatusCode::OK, "{picked}");
                let docs = picked["docs"].as_array().unwrap();
                if docs.is_empty() {
                    break;
                }
                // every fourth document is rescheduled far away, the rest completed
                let results: Vec<Value> = docs
                    .iter()
                    .map(|d| {
                        let subject = d["subject"].as_str().unwrap();
                        let outcome = if subject.ends_with('7') { "reschedule" } else { "complete" };
                        json!({"subject": subject, "lease_token": d["lease_token"], "outcome": outcome,
                               "delay": if outcome == "reschedule" { Some("1d") } else { None },
                               "payload": {"worker": w}})
                    })
                    .collect();
                let (st, res) = s.post("/api/v1/queues/work/resolve", WORKER, json!({"results": results})).await;
                assert_eq!(st, StatusCode::OK, "{res}");
                for r in res["results"].as_array().unwrap() {
                    assert_eq!(r["status"], "ok", "{r}");
                    done.push(r["subject"].as_str().unwrap().to_owned());
                }
            }
            done
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    assert_eq!(all.len(), 10_000, "every document resolved once");
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        10_000,
        "no document twice"
    );

    let rows = sqlx::query(
        "SELECT status, iterations, count(*) FROM fetchq_data.work__docs GROUP BY 1, 2 ORDER BY 1",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    let got: Vec<(i32, i64, i64)> = rows
        .iter()
        .map(|r| (r.get::<i32, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)))
        .collect();
    assert_eq!(
        got,
        vec![(0, 1, 1000), (3, 1, 9000)],
        "status 0 = planned again, 3 = completed; iterations 1"
    );
    s.db.client.metric_log_pack().await.unwrap();
    let c = s.db.client.metric_get_common("work").await.unwrap();
    assert_eq!(
        (c.total, c.completed, c.planned, c.active, c.pending),
        (10_000, 9000, 1000, 0, 0)
    );
    assert_eq!((c.picked, c.processed), (10_000, 10_000), "{c:?}");
}
