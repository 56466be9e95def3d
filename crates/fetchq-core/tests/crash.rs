//! A lease returned by a pick survives a server crash right after the pick.
//!
//! This test starts its own PostgreSQL (fsync and synchronous commit on, as in
//! production; the shared test cluster runs with both off) and crashes it with
//! `pg_ctl stop -m immediate` right after each pick.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::{SystemTime, UNIX_EPOCH};

use fetchq_core::embedded::EmbeddedPostgres;
use fetchq_core::{Client, NewDoc, PickOptions};
use sqlx::Row;

/// Removes the private cluster's files, stopping it first, even on a panic.
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

#[tokio::test]
async fn a_lease_is_durable_before_the_pick_returns() {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("fetchq-crash-{}-{stamp}", std::process::id()));
    let pg = EmbeddedPostgres::new(dir)
        .unwrap()
        .setting("fsync", "on")
        .setting("synchronous_commit", "on")
        .setting("max_connections", "20");
    let cluster = Cluster(pg);
    let url = cluster.0.start().unwrap().url("postgres");
    {
        let client = Client::connect(&url).await.unwrap();
        client.migrate().await.unwrap();
        client.queue_create("q").await.unwrap();
        client
            .push_many(
                "q",
                &(0..200)
                    .map(|i| NewDoc::new(format!("d{i:03}")))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        client.pool().close().await;
    }

    let rounds = 8;
    let mut lost = Vec::new();
    for round in 0..rounds {
        let url = cluster.0.start().unwrap().url("postgres");
        let client = Client::connect(&url).await.unwrap();
        // several picks, each its own transaction, then a crash at once
        let mut leases = Vec::new();
        for _ in 0..4 {
            let docs = client
                .pick("q", &PickOptions::new().limit(2))
                .await
                .unwrap();
            leases.extend(docs.into_iter().map(|d| d.lease));
        }
        assert_eq!(leases.len(), 8);
        cluster.0.stop_immediate().unwrap();
        drop(client);

        let url = cluster.0.start().unwrap().url("postgres");
        let client = Client::connect(&url).await.unwrap();
        for lease in &leases {
            let row = sqlx::query(
                "SELECT status, lease_token FROM fetchq_data.q__docs WHERE subject = $1",
            )
            .bind(&lease.subject)
            .fetch_one(client.pool())
            .await
            .unwrap();
            let status: i32 = row.get(0);
            let token: Option<uuid::Uuid> = row.get(1);
            if status != 2 || token != Some(lease.token) {
                lost.push(format!(
                    "round {round}: {} (status {status})",
                    lease.subject
                ));
            }
        }
        client.pool().close().await;
    }
    assert!(
        lost.is_empty(),
        "{} of {} leases were gone after a crash: {lost:?}",
        lost.len(),
        rounds * 8
    );
}
