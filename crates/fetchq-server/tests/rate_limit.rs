//! Rate limits over the REST API: set, shown, removed, refused, and the pick
//! answer saying when the next slot opens.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, READ, Server, WORK, code};
use fetchq_core::NewDoc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn patch(s: &Server, token: &str, body: Value) -> (StatusCode, Value) {
    s.call(
        Method::PATCH,
        "/api/v1/queues/crawl",
        Some(token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn rate_limits_are_set_shown_removed_and_refused() {
    let s = Server::start().await;
    let (st, _) = s
        .post("/api/v1/queues", ADMIN, json!({"name": "crawl"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, q) = s.get("/api/v1/queues/crawl", READ).await;
    assert_eq!(q["rate_limit"], Value::Null);

    let (st, q) = patch(&s, ADMIN, json!({"rate_limit": "3/s"})).await;
    assert_eq!(
        (st, q["rate_limit"].as_str()),
        (StatusCode::OK, Some("3/1s")),
        "{q}"
    );
    let info = s.db.client.queue_status("crawl").await.unwrap();
    assert_eq!(info.rate_limit, Some("3/s".parse().unwrap()));
    let (_, list) = s.get("/api/v1/queues", READ).await;
    assert_eq!(list["queues"][0]["rate_limit"], "3/1s");

    // refused whole: nothing of a bad patch is applied
    for bad in [
        json!({"rate_limit": "0/s"}),
        json!({"rate_limit": "3"}),
        json!({"rate_limit": "3/forever"}),
        json!({"rate_limit": "100001/s"}),
        json!({"rate_limit": "1/s", "max_attempts": 0}),
    ] {
        let (st, body) = patch(&s, ADMIN, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    // not a string: the body's shape is wrong, as for every field
    let (st, body) = patch(&s, ADMIN, json!({"rate_limit": 3})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (st, body) = patch(&s, READ, json!({"rate_limit": "1/s"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, body) = patch(&s, WORK, json!({"rate_limit": "1/s"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let info = s.db.client.queue_status("crawl").await.unwrap();
    assert_eq!(info.rate_limit, Some("3/s".parse().unwrap()));
    assert_eq!(info.max_attempts, 5);

    // other settings leave the limit alone
    let (_, q) = patch(&s, ADMIN, json!({"max_attempts": 2})).await;
    assert_eq!(q["rate_limit"], "3/1s");

    // the pick answer tells a REST worker when to come back
    let docs: Vec<NewDoc> = (0..5).map(|i| NewDoc::new(format!("p{i}"))).collect();
    s.db.client.push_many("crawl", &docs).await.unwrap();
    s.db.client
        .queue_set_rate_limit("crawl", Some("3/1h".parse().unwrap()))
        .await
        .unwrap();
    let (st, out) = s
        .post("/api/v1/queues/crawl/pick", WORK, json!({"limit": 5}))
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["docs"].as_array().unwrap().len(), 3);
    assert!(out["rate_wait_ms"].as_u64().unwrap() > 3_500_000, "{out}");
    let (_, out) = s
        .post("/api/v1/queues/crawl/pick", WORK, json!({"limit": 5}))
        .await;
    assert!(out["docs"].as_array().unwrap().is_empty());
    assert!(out["rate_wait_ms"].as_u64().unwrap() > 3_500_000, "{out}");
    assert_eq!(out["next_due_ms"], Value::Null);

    for off in [json!({"rate_limit": null}), json!({"rate_limit": "none"})] {
        s.db.client
            .queue_set_rate_limit("crawl", Some("3/1h".parse().unwrap()))
            .await
            .unwrap();
        let (st, q) = patch(&s, ADMIN, off.clone()).await;
        assert_eq!(
            (st, &q["rate_limit"]),
            (StatusCode::OK, &Value::Null),
            "{off}"
        );
    }
    let (_, out) = s
        .post("/api/v1/queues/crawl/pick", WORK, json!({"limit": 5}))
        .await;
    assert_eq!(out["docs"].as_array().unwrap().len(), 2);
    assert_eq!(out["rate_wait_ms"], Value::Null);

    let (st, body) = s
        .call(
            Method::PATCH,
            "/api/v1/queues/nope",
            Some(ADMIN),
            Some(json!({"rate_limit": "1/s"})),
        )
        .await;
    assert_eq!((st, code(&body)), (StatusCode::NOT_FOUND, "FQ002"));
}

#[tokio::test]
async fn key_concurrency_and_keys_over_rest() {
    let s = Server::start().await;
    s.post("/api/v1/queues", ADMIN, json!({"name": "crawl"}))
        .await;
    let (st, q) = patch(&s, ADMIN, json!({"key_concurrency": 1})).await;
    assert_eq!(
        (st, q["key_concurrency"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{q}"
    );
    for bad in [
        json!({"key_concurrency": 0}),
        json!({"key_concurrency": 10_001}),
        json!({"key_concurrency": -3}),
    ] {
        let (st, body) = patch(&s, ADMIN, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    let docs = json!({"docs": [
        {"subject": "a1", "key": "a.example"}, {"subject": "a2", "key": "a.example"},
        {"subject": "b1", "key": "b.example"}, {"subject": "free"}
    ]});
    let (st, out) = s.post("/api/v1/queues/crawl/docs", ADMIN, docs).await;
    assert_eq!(
        (st, out["queued"].as_u64()),
        (StatusCode::OK, Some(4)),
        "{out}"
    );
    for bad in [
        json!({"docs": [{"subject": "x", "key": ""}]}),
        json!({"docs": [{"subject": "x", "key": "k".repeat(256)}]}),
        json!({"mode": "append", "docs": [{"key": ""}]}),
    ] {
        let (st, body) = s
            .post("/api/v1/queues/crawl/docs", ADMIN, bad.clone())
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    // one per key, and the one without a key
    let (_, out) = s
        .post("/api/v1/queues/crawl/pick", WORK, json!({"limit": 10}))
        .await;
    let mut got: Vec<&str> = out["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["subject"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got.len(), 3, "{out}");
    assert!(got.contains(&"free") && got.contains(&"b1"), "{out}");
    let (st, q) = patch(&s, ADMIN, json!({"key_concurrency": null})).await;
    assert_eq!((st, &q["key_concurrency"]), (StatusCode::OK, &Value::Null));
    let (_, out) = s
        .post("/api/v1/queues/crawl/pick", WORK, json!({"limit": 10}))
        .await;
    assert_eq!(out["docs"].as_array().unwrap().len(), 1, "{out}");

    // reads show the key; append takes one
    let (st, doc) = s.get("/api/v1/queues/crawl/docs/a1", ADMIN).await;
    assert_eq!(
        (st, doc["key"].as_str()),
        (StatusCode::OK, Some("a.example")),
        "{doc}"
    );
    let (_, doc) = s.get("/api/v1/queues/crawl/docs/free", ADMIN).await;
    assert_eq!(doc["key"], Value::Null, "{doc}");
    let (st, out) = s
        .post(
            "/api/v1/queues/crawl/docs",
            ADMIN,
            json!({"mode": "append", "docs": [{"key": "c.example"}, {}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let subjects = out["subjects"].as_array().unwrap();
    let (_, doc) = s
        .get(
            &format!(
                "/api/v1/queues/crawl/docs/{}",
                subjects[0].as_str().unwrap()
            ),
            ADMIN,
        )
        .await;
    assert_eq!(doc["key"].as_str(), Some("c.example"), "{doc}");
    let (_, doc) = s
        .get(
            &format!(
                "/api/v1/queues/crawl/docs/{}",
                subjects[1].as_str().unwrap()
            ),
            ADMIN,
        )
        .await;
    assert_eq!(doc["key"], Value::Null, "{doc}");
    let (_, page) = s.get("/api/v1/queues/crawl/docs?limit=10", ADMIN).await;
    let keyed = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["key"].is_string())
        .count();
    assert_eq!(keyed, 4, "{page}");
}
