//! Hostile input never yields a 500.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ADMIN, Server};
use fetchq_server::{Config, Tokens};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn hostile_path_segments_are_400_or_404_never_500() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    let long = "a".repeat(10_000);
    let names = [
        "q'",
        "q\"",
        "q%27%3B%20DROP%20TABLE%20x%3B--",
        "q;drop",
        "q%00",
        "%00",
        "..",
        "%2E%2E",
        "q%2F..",
        "%C3%A9t%C3%A9",
        "%F0%9F%92%A9",
        "%FF%FE",
        &long,
        "Q",
        "1q",
        "q%20",
    ];
    for name in names {
        for suffix in ["", "/docs", "/docs/s", "/metrics", "/logs", "/pause"] {
            for method in [Method::GET, Method::POST, Method::DELETE] {
                let path = format!("/api/v1/queues/{name}{suffix}");
                let (st, body) = s.raw(method.clone(), &path, ADMIN, b"{}".to_vec()).await;
                assert!(
                    !st.is_server_error(),
                    "{method} {}: {st} {body}",
                    path.chars().take(80).collect::<String>()
                );
                assert!(st.is_client_error(), "{method} {path}: {st}");
            }
        }
    }
    for subject in ["%00", "x%00y", &"s".repeat(256), "%FF", "a'b;--"] {
        let (st, body) = s
            .raw(
                Method::GET,
                &format!("/api/v1/queues/q/docs/{subject}"),
                ADMIN,
                vec![],
            )
            .await;
        assert!(st.is_client_error(), "{subject}: {st} {body}");
    }
    // the queue survived
    assert!(s.db.client.queue_status("q").await.is_ok());
}

#[tokio::test]
async fn hostile_bodies_are_4xx() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_payload = format!(
        r#"{{"docs": [{{"subject": "x", "payload": {}1{}}}]}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let bodies: Vec<(Vec<u8>, StatusCode)> = vec![
        (b"not json".to_vec(), StatusCode::BAD_REQUEST),
        (b"".to_vec(), StatusCode::BAD_REQUEST),
        (vec![0xff, 0xfe, 0x00], StatusCode::BAD_REQUEST),
        (deep.into_bytes(), StatusCode::BAD_REQUEST),
        (deep_payload.into_bytes(), StatusCode::BAD_REQUEST),
        (
            br#"{"docs": "many"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            br#"{"docs": [{"subject": 42}]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            br#"{"docs": {"a": 1}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            br#"{"docs": [{"subject": "a\u0000b"}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"docs": [{"subject": "a", "payload": {"k": "\u0000"}}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"docs": [{"subject": "a", "next_iteration": "99999-01-01T00:00:00Z"}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"docs": [{"subject": "a", "next_iteration": "0001-01-01T00:00:00Z"}]}"#.to_vec(),
            StatusCode::OK,
        ),
        (
            br#"{"docs": [{"subject": "b", "delay": "1000000000000d"}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"docs": [{"subject": "c", "version": 1e30}]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (body, expected) in bodies {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let (st, text) = s
            .raw(Method::POST, "/api/v1/queues/q/docs", ADMIN, body)
            .await;
        assert_eq!(st, expected, "{shown}: {text}");
    }
    for body in [
        &b"{\"limit\": 1e3}"[..],
        b"{\"limit\": 99999999999999999999999}",
        b"{\"lease\": 5}",
        b"[1,2,3]",
        b"null",
    ] {
        let (st, text) = s
            .raw(Method::POST, "/api/v1/queues/q/pick", ADMIN, body.to_vec())
            .await;
        assert!(
            st.is_client_error(),
            "{}: {st} {text}",
            String::from_utf8_lossy(body)
        );
    }
    // wrong content type: 415
    let res = s
        .http
        .post(s.url("/api/v1/queues/q/pick"))
        .bearer_auth(ADMIN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_huge_body_is_refused_without_reading_it() {
    let s = Server::with_config(Config {
        tokens: Tokens::parse(&format!("admin={ADMIN}")).unwrap(),
        body_limit: 1024 * 1024,
        ..Config::default()
    })
    .await;
    s.db.client.queue_create("q").await.unwrap();
    // announced 100 MB: answered 413 after the server read almost nothing
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/queues/q/docs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"docs\": [",
        100 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");

    // chunked (no length announced), 3 MB: 413 from the limited reader
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/queues/q/docs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    for _ in 0..48 {
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // just under the limit with a length: parsed normally
    let mut ok_body = br#"{"docs": [{"subject": "x", "payload": {"pad": ""#.to_vec();
    ok_body.extend(std::iter::repeat_n(b'p', 1000 * 1000));
    ok_body.extend(br#""}}]}"#);
    let (st, text) = s
        .raw(Method::POST, "/api/v1/queues/q/docs", ADMIN, ok_body)
        .await;
    assert!(
        st == StatusCode::OK || st == StatusCode::PAYLOAD_TOO_LARGE,
        "{st} {text}"
    );
    assert!(!st.is_server_error());
}
