//! The OpenAPI document and the router agree, and every documented operation
//! checks the token and its scope.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{READ, Server, code};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const OPEN: [&str; 3] = ["/", "/health", "/api/v1/openapi.json"];

fn concrete(path: &str) -> String {
    path.replace("{queue}", "q")
        .replace("{subject}", "s")
        .replace("{name}", "n")
}

async fn document(s: &Server) -> Value {
    let (st, doc) = s
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    doc
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_owned(), path.clone()));
            }
        }
    }
    ops
}

/// The routes `routes::routes()` declares, read from its source.
fn routed() -> BTreeSet<(String, String)> {
    let src = include_str!("../src/routes/mod.rs");
    let body = &src[src.find("Router::new()").unwrap()..];
    let mut ops = BTreeSet::new();
    for chunk in body.split(".route(").skip(1) {
        let arg = &chunk[..chunk.find(',').unwrap()];
        let raw = match arg.find('"') {
            Some(first) => {
                let rest = &arg[first + 1..];
                &rest[..rest.find('"').unwrap()]
            }
            None => {
                assert_eq!(arg.trim(), "q", "a route path I cannot read: {arg}");
                "{q}"
            }
        };
        let path = raw
            .replace("{q}", "/api/v1/queues/{queue}")
            .replace("{{", "{")
            .replace("}}", "}");
        for m in ["get", "post", "put", "patch", "delete"] {
            if chunk.contains(&format!("{m}(")) || chunk.contains(&format!(".{m}(")) {
                ops.insert((m.to_owned(), path.clone()));
            }
        }
    }
    assert!(ops.len() > 20, "could not read the routes: {ops:?}");
    ops
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_served() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    let doc = document(&s).await;
    let documented = documented(&doc);
    let routed = routed();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "served, not documented: {undocumented:?}"
    );
    assert!(unserved.is_empty(), "documented, not served: {unserved:?}");
    // and the server agrees: a documented method is served (not 404/405), an
    // undocumented method on a documented path is 405
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for m in METHODS {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let (st, b) = s
                .call(method, &concrete(path), Some(common::ADMIN), None)
                .await;
            if documented.contains(&(m.to_owned(), path.clone())) {
                assert!(
                    st != StatusCode::METHOD_NOT_ALLOWED
                        && !(st == StatusCode::NOT_FOUND
                            && code(&b) == "not_found"
                            && b["error"]["message"].as_str().unwrap().contains("endpoint")),
                    "{m} {path}: {st} {b}"
                );
            } else {
                assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}: {b}");
            }
        }
    }
}

#[tokio::test]
async fn every_documented_operation_needs_a_token_and_a_read_token_only_reads() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    let doc = document(&s).await;
    let ops = documented(&doc);
    assert!(ops.len() > 20);
    for (m, path) in ops {
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let url = concrete(&path);
        let (st, b) = s.call(method.clone(), &url, None, None).await;
        if OPEN.contains(&path.as_str()) {
            assert!(st.is_success(), "{m} {path} without a token: {st} {b}");
            continue;
        }
        assert_eq!(
            (st, code(&b)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{m} {path} without a token"
        );
        let (st, b) = s.call(method.clone(), &url, Some(READ), None).await;
        if m == "get" {
            assert!(
                st != StatusCode::UNAUTHORIZED && st != StatusCode::FORBIDDEN,
                "{m} {path} with a read token: {st} {b}"
            );
        } else {
            assert_eq!(
                (st, code(&b)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{m} {path} with a read token"
            );
        }
    }
}
