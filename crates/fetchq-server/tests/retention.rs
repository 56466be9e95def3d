//! Completed-document retention over the REST API: shown, set, refused, and
//! a completion through `resolve` that deletes at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ADMIN, READ, Server, WORK, code};
use fetchq_core::{NewDoc, Retention};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn patch(s: &Server, queue: &str, body: Value) -> (StatusCode, Value) {
    s.call(
        Method::PATCH,
        &format!("/api/v1/queues/{queue}"),
        Some(ADMIN),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn completed_retention_is_shown_set_and_refused() {
    let s = Server::start().await;
    s.post("/api/v1/queues", ADMIN, json!({"name": "mail"}))
        .await;
    let (_, q) = s.get("/api/v1/queues/mail", READ).await;
    assert_eq!(q["completed_retention"], "keep", "{q}");

    let (st, q) = patch(&s, "mail", json!({"completed_retention": "7d"})).await;
    assert_eq!(
        (st, q["completed_retention"].as_str()),
        (StatusCode::OK, Some("7days")),
        "{q}"
    );
    assert_eq!(
        s.db.client
            .queue_status("mail")
            .await
            .unwrap()
            .completed_retention,
        Retention::After(Duration::from_secs(7 * 86_400))
    );
    // refused before anything changes, the other fields of the call too
    for bad in [
        json!({"completed_retention": "-1h"}),
        json!({"completed_retention": "sometimes"}),
        json!({"completed_retention": 5}),
        json!({"completed_retention": "1ns"}),
        json!({"completed_retention": "200years"}),
        json!({"completed_retention": "99999999999999999d"}),
        json!({"completed_retention": ""}),
        json!({"max_attempts": 9, "completed_retention": "soon"}),
    ] {
        let (st, body) = patch(&s, "mail", bad.clone()).await;
        assert!(st.is_client_error(), "{bad} -> {st} {body}");
    }
    let info = s.db.client.queue_status("mail").await.unwrap();
    assert_eq!(
        (info.completed_retention, info.max_attempts),
        (Retention::After(Duration::from_secs(7 * 86_400)), 5)
    );
    // other settings leave it alone
    let (_, q) = patch(&s, "mail", json!({"max_attempts": 2})).await;
    assert_eq!(q["completed_retention"], "7days");
    // null and "keep" go back to keeping
    for keep in [
        json!({"completed_retention": null}),
        json!({"completed_retention": "keep"}),
    ] {
        patch(&s, "mail", json!({"completed_retention": "at-once"})).await;
        let (st, q) = patch(&s, "mail", keep.clone()).await;
        assert_eq!(
            (st, q["completed_retention"].as_str()),
            (StatusCode::OK, Some("keep")),
            "{keep}"
        );
    }
    // the console's settings form shows it
    patch(&s, "mail", json!({"completed_retention": "36h"})).await;
    let res = reqwest::Client::new()
        .get(s.url("/console/queues/mail"))
        .header("accept", "text/html")
        .header(
            "cookie",
            format!(
                "fetchq_session={}",
                ADMIN
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(
        html.contains(r#"name="completed_retention" placeholder="keep" value="1day 12h""#),
        "{html}"
    );
    let (st, body) = patch(&s, "nope", json!({"completed_retention": "at-once"})).await;
    assert_eq!((st, code(&body)), (StatusCode::NOT_FOUND, "FQ002"));
}

#[tokio::test]
async fn a_rest_completion_deletes_at_once() {
    let s = Server::start().await;
    s.post("/api/v1/queues", ADMIN, json!({"name": "mail"}))
        .await;
    let (st, q) = patch(&s, "mail", json!({"completed_retention": "at-once"})).await;
    assert_eq!(
        (st, q["completed_retention"].as_str()),
        (StatusCode::OK, Some("at-once")),
        "{q}"
    );
    let c = &s.db.client;
    c.push_many(
        "mail",
        &[NewDoc::new("a"), NewDoc::new("b"), NewDoc::new("c")],
    )
    .await
    .unwrap();
    let (_, picked) = s
        .post("/api/v1/queues/mail/pick", WORK, json!({"limit": 3}))
        .await;
    let docs = picked["docs"].as_array().unwrap();
    assert_eq!(docs.len(), 3, "{picked}");
    let item = |d: &Value, token: Value| json!({"subject": d["subject"], "lease_token": token, "outcome": "complete"});
    let stale = json!(uuid::Uuid::new_v4().to_string());
    let (st, res) = s
        .post(
            "/api/v1/queues/mail/resolve",
            WORK,
            json!({"results": [item(&docs[0], docs[0]["lease_token"].clone()),
                               item(&docs[1], docs[1]["lease_token"].clone()),
                               item(&docs[2], stale)]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{res}");
    let statuses: Vec<&str> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "ok", "lease_lost"]);
    let (st, _) = s
        .get(
            &format!(
                "/api/v1/queues/mail/docs/{}",
                docs[0]["subject"].as_str().unwrap()
            ),
            READ,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, doc) = s
        .get(
            &format!(
                "/api/v1/queues/mail/docs/{}",
                docs[2]["subject"].as_str().unwrap()
            ),
            READ,
        )
        .await;
    assert_eq!(
        (st, doc["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{doc}"
    );
    let (_, q) = s.get("/api/v1/queues/mail", READ).await;
    assert_eq!(
        (
            q["counters"]["total"].as_i64(),
            q["counters"]["completed"].as_i64(),
            q["counters"]["processed"].as_i64()
        ),
        (Some(1), Some(0), Some(2)),
        "{q}"
    );
    assert_eq!(
        c.metric_get_common("mail").await.unwrap().status_counts(),
        c.metric_compute("mail").await.unwrap()
    );
}

/// A retention over 100 years is refused before any other field of the
/// same call is applied (the database refuses it too, but only after the
/// settings before it had changed).
#[tokio::test]
async fn a_too_long_retention_changes_no_other_setting_of_the_call() {
    let s = Server::start().await;
    s.post("/api/v1/queues", ADMIN, json!({"name": "mail"}))
        .await;
    let before = s.db.client.queue_status("mail").await.unwrap();
    for long in ["200years", "101years", "36001days"] {
        let bad = json!({"max_attempts": 9, "key_concurrency": 3, "completed_retention": long});
        let (st, body) = patch(&s, "mail", bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert!(body.to_string().contains("100 years"), "{bad} -> {body}");
        let info = s.db.client.queue_status("mail").await.unwrap();
        assert_eq!(
            (
                info.max_attempts,
                info.key_concurrency,
                info.completed_retention
            ),
            (before.max_attempts, None, Retention::Keep),
            "{long}"
        );
    }
    // exactly 100 years (36,000 days, as PostgreSQL compares intervals) is allowed
    let (st, body) = patch(&s, "mail", json!({"completed_retention": "36000days"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        s.db.client
            .queue_status("mail")
            .await
            .unwrap()
            .completed_retention,
        Retention::After(Duration::from_secs(36_000 * 86_400))
    );
}
