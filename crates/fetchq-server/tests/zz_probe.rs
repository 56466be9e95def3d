#![allow(clippy::unwrap_used)]
mod common;
use common::{ADMIN, Server};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn probe() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    let p = |x: &str| x.to_string();
    let calls: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (
            Method::POST,
            p("/api/v1/queues/nope/resolve"),
            Some(json!({"results": []})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/nope/extend"),
            Some(json!({"leases": []})),
        ),
        (Method::GET, p("/api/v1/queues/q/docs?after=%FF"), None),
        (Method::GET, p("/api/v1/queues/q/docs?status=bogus"), None),
        (
            Method::GET,
            p("/api/v1/queues/q/docs?limit=1000000000000"),
            None,
        ),
        (
            Method::GET,
            p("/api/v1/queues/q/metrics?since=infinity"),
            None,
        ),
        (
            Method::GET,
            p("/api/v1/queues/q/metrics?since=99999999999d"),
            None,
        ),
        (
            Method::GET,
            p("/api/v1/queues/q/metrics?since=9999-12-31T23:59:59-23:59"),
            None,
        ),
        (
            Method::GET,
            p("/api/v1/queues/q/logs?before=-9223372036854775808"),
            None,
        ),
        (
            Method::PATCH,
            p("/api/v1/queues/q"),
            Some(json!({"retry_delay": "2h", "retry_delay_max": "1h"})),
        ),
        (
            Method::PATCH,
            p("/api/v1/queues/q"),
            Some(json!({"logs_retention": "0s"})),
        ),
        (
            Method::PATCH,
            p("/api/v1/queues/q"),
            Some(json!({"retry_delay": "0s"})),
        ),
        (
            Method::PATCH,
            p("/api/v1/queues/q"),
            Some(json!({"max_payload_size": 2147483647})),
        ),
        (
            Method::PATCH,
            p("/api/v1/queues/q"),
            Some(json!({"retry_jitter": 1e308})),
        ),
        (Method::PATCH, p("/api/v1/queues/nope"), Some(json!({}))),
        (
            Method::POST,
            p("/api/v1/queues/q/docs"),
            Some(json!({"docs": [{"subject": "é".repeat(255)}, {"subject": "💩".repeat(255)}]})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs"),
            Some(
                json!({"docs": [{"subject": "y", "next_iteration": "9999-12-31T23:59:59-23:59", "priority": -2147483648i64}]}),
            ),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs"),
            Some(
                json!({"mode": "upsert", "docs": [{"subject": "y", "next_iteration": "0000-01-01T00:00:00+23:59"}]}),
            ),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs"),
            Some(json!({"mode": "append", "docs": [{"payload": {"a": "\u{0000}"}}]})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs"),
            Some(
                json!({"mode": "upsert", "docs": [{"subject": "z", "payload": {"a\u{0000}": 1}}]}),
            ),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs"),
            Some(json!({"docs": [{"subject": "w", "payload": "\u{0000}"}]})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs:bulk"),
            Some(
                json!({"filter": {}, "action": "reschedule", "next_iteration": "9999-12-31T23:59:59-23:59"}),
            ),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs:bulk"),
            Some(json!({"filter": {"subject_prefix": "\u{0000}"}, "action": "play"})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs:bulk"),
            Some(json!({"filter": {"subject_prefix": "x".repeat(300)}, "action": "play"})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/nope/docs:bulk"),
            Some(json!({"filter": {}, "action": "play"})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/docs/y/reschedule"),
            Some(json!({"next_iteration": "infinity"})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/pick"),
            Some(json!({"lease": "1000y"})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/pick"),
            Some(json!({"lease": "0s"})),
        ),
        (
            Method::POST,
            p("/api/v1/queues/q/pick"),
            Some(json!({"lease": "9y", "limit": 1000})),
        ),
        (
            Method::GET,
            p("/api/v1/queues/q/docs?subject_prefix=%25&limit=1"),
            None,
        ),
        (
            Method::GET,
            p("/api/v1/queues/q/docs?version=2147483648"),
            None,
        ),
        (Method::GET, p("/api/v1/queues/q/logs?subject=%00"), None),
        (Method::GET, p("/api/v1/queues/q/docs/%F0%9F%92%A9"), None),
    ];
    for (m, path, body) in calls {
        let (st, b) = s.call(m.clone(), &path, Some(ADMIN), body).await;
        println!(
            "{m} {}: {st} {}",
            path.chars().take(70).collect::<String>(),
            b.to_string().chars().take(300).collect::<String>()
        );
    }
}
