//! The database goes away: health and the API answer 503, not 500, and
//! recover when it is back. Uses its own private cluster (never the shared one).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fetchq_core::Client;
use fetchq_core::embedded::EmbeddedPostgres;
use fetchq_server::{Config, Tokens};
use reqwest::StatusCode;
use serde_json::Value;

struct Cluster(EmbeddedPostgres);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.stop_immediate();
        let dir = self.0.data_dir().to_path_buf();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(dir.with_extension("lock"));
        let _ = std::fs::remove_file(dir.with_extension("port"));
    }
}

async fn get(http: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let res = http
        .get(url)
        .bearer_auth("admin-secret-1")
        .send()
        .await
        .unwrap();
    let st = res.status();
    (st, res.json().await.unwrap())
}

#[tokio::test]
async fn database_down_is_503_and_recovers() {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "fetchq-server-outage-{}-{stamp}",
        std::process::id()
    ));
    let cluster = Cluster(
        EmbeddedPostgres::new(dir)
            .unwrap()
            .setting("max_connections", "20"),
    );
    let url = cluster.0.start().unwrap().url("postgres");
    let client = Client::connect(&url).await.unwrap();
    client.migrate().await.unwrap();
    client.queue_create("q").await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        tokens: Tokens::parse("admin=admin-secret-1").unwrap(),
        ..Config::default()
    };
    tokio::spawn(fetchq_server::serve(
        listener,
        client,
        config,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let (st, body) = get(&http, format!("http://{addr}/health")).await;
    assert_eq!((st, body["status"].as_str()), (StatusCode::OK, Some("ok")));

    cluster.0.stop_immediate().unwrap();
    let started = Instant::now();
    let (st, body) = get(&http, format!("http://{addr}/health")).await;
    assert_eq!(
        (st, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "health answers without waiting long"
    );
    for path in [
        "/api/v1/queues",
        "/api/v1/queues/q",
        "/api/v1/queues/q/metrics",
    ] {
        let (st, body) = get(&http, format!("http://{addr}{path}")).await;
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
            "{path}: {body}"
        );
    }
    let res = http
        .post(format!("http://{addr}/api/v1/queues/q/pick"))
        .bearer_auth("admin-secret-1")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    cluster.0.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, _) = get(&http, format!("http://{addr}/api/v1/queues/q")).await;
        if st == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the API did not recover: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, _) = get(&http, format!("http://{addr}/health")).await;
    assert_eq!(st, StatusCode::OK);
}
