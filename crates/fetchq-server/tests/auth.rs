//! Tokens and scopes: 401 without a known token, 403 without the scope, for
//! every endpoint class.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, PUSH, READ, Server, WORK, WORKER, code};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// (method, path, body, scope needed)
fn endpoints() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    let lease = json!({"subject": "s", "lease_token": uuid::Uuid::nil().to_string()});
    vec![
        (Method::GET, "/api/v1/queues", None, "read"),
        (Method::GET, "/api/v1/queues/q", None, "read"),
        (Method::GET, "/api/v1/queues/q/docs", None, "read"),
        (Method::GET, "/api/v1/queues/q/docs/s", None, "read"),
        (Method::GET, "/api/v1/queues/q/logs", None, "read"),
        (Method::GET, "/api/v1/queues/q/metrics", None, "read"),
        (
            Method::POST,
            "/api/v1/queues/q/docs",
            Some(json!({"docs": [{"subject": "s"}]})),
            "push",
        ),
        (
            Method::POST,
            "/api/v1/queues/q/pick",
            Some(json!({})),
            "work",
        ),
        (
            Method::POST,
            "/api/v1/queues/q/resolve",
            Some(json!({"results": []})),
            "work",
        ),
        (
            Method::POST,
            "/api/v1/queues/q/extend",
            Some(json!({"leases": [lease]})),
            "work",
        ),
        (
            Method::POST,
            "/api/v1/queues",
            Some(json!({"name": "q2"})),
            "admin",
        ),
        (Method::PATCH, "/api/v1/queues/q", Some(json!({})), "admin"),
        (Method::POST, "/api/v1/queues/q/pause", None, "admin"),
        (Method::POST, "/api/v1/queues/q/resume", None, "admin"),
        (Method::POST, "/api/v1/queues/q/docs/s/play", None, "admin"),
        (Method::POST, "/api/v1/queues/q/docs/s/kill", None, "admin"),
        (
            Method::POST,
            "/api/v1/queues/q/docs/s/reschedule",
            Some(json!({"delay": "1m"})),
            "admin",
        ),
        (
            Method::POST,
            "/api/v1/queues/q/docs:bulk",
            Some(json!({"filter": {"subject_prefix": "zz"}, "action": "kill"})),
            "admin",
        ),
        (
            Method::DELETE,
            "/api/v1/queues/q/docs/nothing",
            None,
            "admin",
        ),
        (Method::DELETE, "/api/v1/queues/gone", None, "admin"),
    ]
}

fn grants(token: &str, scope: &str) -> bool {
    match token {
        ADMIN => true,
        READ => scope == "read",
        PUSH => scope == "push",
        WORK => scope == "work",
        WORKER => scope == "push" || scope == "work",
        _ => false,
    }
}

#[tokio::test]
async fn every_endpoint_checks_token_then_scope() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    s.db.client.queue_create("gone").await.unwrap();
    for (method, path, body, scope) in endpoints() {
        // no token, a wrong one, a malformed header: 401, even with a bad body
        let (st, b) = s.call(method.clone(), path, None, body.clone()).await;
        assert_eq!(
            (st, code(&b)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{method} {path}"
        );
        let (st, _) = s
            .call(method.clone(), path, Some("wrong-secret-1"), body.clone())
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path}");
        let res = s
            .http
            .request(method.clone(), s.url(path))
            .header("authorization", format!("Basic {ADMIN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        for token in [READ, PUSH, WORK, WORKER, ADMIN] {
            let (st, b) = s
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            if grants(token, scope) {
                assert!(
                    st != StatusCode::UNAUTHORIZED
                        && st != StatusCode::FORBIDDEN
                        && !st.is_server_error(),
                    "{token} on {method} {path}: {st} {b}"
                );
            } else {
                assert_eq!(
                    (st, code(&b)),
                    (StatusCode::FORBIDDEN, "forbidden"),
                    "{token} on {method} {path}"
                );
                assert!(b["error"]["message"].as_str().unwrap().contains(scope));
            }
        }
    }
}

#[tokio::test]
async fn a_forbidden_request_is_refused_before_its_body_is_read() {
    let s = Server::start().await;
    // not JSON at all, but the token is checked first
    let (st, _) = s
        .raw(Method::POST, "/api/v1/queues/q/pick", READ, b"{{{".to_vec())
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .raw(
            Method::POST,
            "/api/v1/queues/q/pick",
            "nope-nope-nope",
            b"{{{".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_in_the_query_string_works_for_the_ready_url() {
    let s = Server::start().await;
    let res = s
        .http
        .get(s.url(&format!("/api/v1/queues?token={READ}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = s
        .http
        .get(s.url("/api/v1/queues?token=bad-bad-bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
