//! Graceful shutdown: a request in flight finishes, then the server stops.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{READ, Server};
use reqwest::StatusCode;

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let mut s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    s.db.client
        .push("q", &fetchq_core::NewDoc::new("x"))
        .await
        .unwrap();
    // hold the documents table so the request blocks in the database
    let mut tx = s.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE fetchq_data.q__docs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let url = s.url("/api/v1/queues/q/docs/x");
    let http = s.http.clone();
    let in_flight = tokio::spawn(async move { http.get(url).bearer_auth(READ).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !in_flight.is_finished(),
        "the request is blocked on the lock"
    );

    let stopping = {
        let handle = s.handle.take().unwrap();
        s.stop_signal();
        handle
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "the server waits for the request in flight"
    );
    // a new connection is refused while it drains
    let fresh = reqwest::Client::new().get(s.url("/health")).send().await;
    assert!(
        fresh.is_err(),
        "new connections are not accepted: {fresh:?}"
    );

    tx.rollback().await.unwrap();
    let res = in_flight.await.unwrap().unwrap();
    assert!(
        res.status() == StatusCode::OK || res.status().is_client_error(),
        "{}",
        res.status()
    );
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_full_pool_answers_503_after_the_request_timeout() {
    let db = fetchq_testing::TestDb::with_pool_size(1).await;
    db.client.queue_create("q").await.unwrap();
    let config = fetchq_server::Config {
        tokens: common::tokens(),
        request_timeout: Duration::from_secs(2),
        ..fetchq_server::Config::default()
    };
    let s = Server::on(db, config).await;
    let held = s.db.pool.acquire().await.unwrap();
    let (st, body) = s.get("/api/v1/queues/q", READ).await;
    assert_eq!(
        (st, common::code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        "{body}"
    );
    drop(held);
    let (st, _) = s.get("/api/v1/queues/q", READ).await;
    assert_eq!(st, StatusCode::OK, "serves again once a connection is free");
}
