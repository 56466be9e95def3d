//! Resolving documents: reschedule, complete, kill, drop, reject with backoff,
//! dead after max attempts, orphans, fencing tokens and heartbeats.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use chrono::Utc;
use fetchq_core::{Client, Error, NewDoc, PickOptions, Schedule, Status};
use fetchq_testing::TestDb;
use serde_json::json;

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    db
}

async fn logs(db: &TestDb, subject: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT message FROM fetchq_data.q__logs WHERE subject = $1 ORDER BY id")
        .bind(subject)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

async fn assert_counters_exact(db: &TestDb) {
    db.client.metric_log_pack().await.unwrap();
    let counters = db.client.metric_get_common("q").await.unwrap();
    assert_eq!(
        counters.status_counts(),
        db.client.metric_compute("q").await.unwrap()
    );
}

#[tokio::test]
async fn a_repetitive_task_runs_again_at_its_planned_time() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("ironman").payload(json!({"runs": 0})))
        .await
        .unwrap();
    for run in 1..=3 {
        let doc = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
        assert_eq!(doc.iterations, run - 1);
        let runs = doc.payload["runs"].as_i64().unwrap() + 1;
        c.reschedule(
            &doc.lease,
            Schedule::after(Duration::from_millis(200)),
            Some(&json!({"runs": runs})),
        )
        .await
        .unwrap();
        let state = c.get("q", "ironman").await.unwrap();
        assert_eq!(
            (state.status, state.attempts, state.iterations),
            (Status::Planned, 0, run)
        );
        assert!(
            c.pick("q", &PickOptions::new()).await.unwrap().is_empty(),
            "not before its time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let doc = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
    assert_eq!(doc.payload, json!({"runs": 3}));
    // a reschedule into the past is pending at once
    c.reschedule(
        &doc.lease,
        Schedule::at(Utc::now() - chrono::Duration::days(1)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(c.get("q", "ironman").await.unwrap().status, Status::Pending);
    assert_counters_exact(&db).await;
}

#[tokio::test]
async fn complete_and_kill_store_a_final_payload() {
    let db = setup().await;
    let c = &db.client;
    c.push_many("q", &[NewDoc::new("a"), NewDoc::new("b")])
        .await
        .unwrap();
    let mut docs = c.pick("q", &PickOptions::new().limit(2)).await.unwrap();
    let b = docs.pop().unwrap();
    let a = docs.pop().unwrap();
    c.complete(&a.lease, Some(&json!({"done": true})))
        .await
        .unwrap();
    c.kill(&b.lease, Some(&json!({"why": "404"})))
        .await
        .unwrap();
    let a = c.get("q", "a").await.unwrap();
    let b = c.get("q", "b").await.unwrap();
    assert_eq!(
        (a.status, a.iterations, a.payload),
        (Status::Completed, 1, json!({"done": true}))
    );
    assert_eq!(
        (b.status, b.iterations, b.payload),
        (Status::Dead, 1, json!({"why": "404"}))
    );
    assert_counters_exact(&db).await;
}

#[tokio::test]
async fn resolutions_only_act_on_active_documents() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("a")).await.unwrap();
    let doc = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
    c.complete(&doc.lease, None).await.unwrap();
    // a second resolution with the same lease finds nothing active
    assert!(matches!(
        c.complete(&doc.lease, None).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        c.kill(&doc.lease, None).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        c.drop_doc(&doc.lease).await,
        Err(Error::LeaseLost { .. })
    ));
    // plain SQL without a token: 0 rows on a non-active document
    let n: i32 = sqlx::query_scalar("SELECT affected_rows FROM fetchq.doc_kill('q', 'a')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(c.get("q", "a").await.unwrap().status, Status::Completed);
}

#[tokio::test]
async fn a_stale_lease_token_cannot_overwrite_the_new_holder() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("a")).await.unwrap();
    let first = c
        .pick("q", &PickOptions::new().lease(Duration::from_millis(100)))
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // the lease expired: maintenance rescues the orphan, another worker picks it
    assert_eq!(c.mnt_run("q", 100).await.unwrap().rescheduled, 1);
    let second = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
    assert_ne!(first.lease.token, second.lease.token);
    assert_eq!(second.attempts, 2);

    for stale in [
        c.complete(&first.lease, Some(&json!({"stale": true})))
            .await,
        c.reschedule(&first.lease, Schedule::now(), None).await,
        c.reject(&first.lease, "stale", None, None).await,
        c.kill(&first.lease, None).await,
        c.drop_doc(&first.lease).await,
        c.extend_lease(&first.lease, Duration::from_secs(60)).await,
    ] {
        assert!(
            matches!(stale, Err(Error::LeaseLost { .. })),
            "got {stale:?}"
        );
    }
    assert_eq!(c.get("q", "a").await.unwrap().status, Status::Active);
    c.complete(&second.lease, Some(&json!({"fresh": true})))
        .await
        .unwrap();
    assert_eq!(
        c.get("q", "a").await.unwrap().payload,
        json!({"fresh": true})
    );
    assert_counters_exact(&db).await;
}

#[tokio::test]
async fn a_heartbeat_keeps_the_lease_alive() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("slow")).await.unwrap();
    let doc = c
        .pick("q", &PickOptions::new().lease(Duration::from_millis(300)))
        .await
        .unwrap()
        .remove(0);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.extend_lease(&doc.lease, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(c.mnt_run("q", 100).await.unwrap().rescheduled, 0);
    }
    c.complete(&doc.lease, None).await.unwrap();
    assert_eq!(c.get("q", "slow").await.unwrap().status, Status::Completed);
}

#[tokio::test]
async fn reject_logs_and_retries_after_backoff_then_dies() {
    let db = setup().await;
    let c = &db.client;
    c.queue_set_max_attempts("q", 3).await.unwrap();
    c.queue_set_retry_backoff(
        "q",
        Duration::from_millis(100),
        Duration::from_secs(10),
        0.0,
    )
    .await
    .unwrap();
    c.push("q", &NewDoc::new("flaky")).await.unwrap();

    for attempt in 1..=3 {
        let doc = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
        assert_eq!(doc.attempts, attempt);
        let before = Utc::now();
        c.reject(
            &doc.lease,
            &format!("boom {attempt}"),
            Some(&json!({"code": 500})),
            Some("worker-1"),
        )
        .await
        .unwrap();
        let state = c.get("q", "flaky").await.unwrap();
        if attempt < 3 {
            assert_eq!(state.status, Status::Planned);
            // exponential: 100ms, 200ms
            let wait = state.next_iteration - before;
            let expected = chrono::Duration::milliseconds(100 * (1 << (attempt - 1)));
            assert!(
                wait >= expected - chrono::Duration::milliseconds(20)
                    && wait <= expected + chrono::Duration::milliseconds(200),
                "attempt {attempt}: waited {wait}"
            );
            assert!(
                c.pick("q", &PickOptions::new()).await.unwrap().is_empty(),
                "not before the backoff"
            );
            tokio::time::sleep(Duration::from_millis(100 * (1 << (attempt - 1)) + 50)).await;
        } else {
            assert_eq!(state.status, Status::Dead);
        }
    }
    assert_eq!(logs(&db, "flaky").await, ["boom 1", "boom 2", "boom 3"]);
    let details: serde_json::Value =
        sqlx::query_scalar("SELECT details FROM fetchq_data.q__logs LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(details, json!({"code": 500}));
    c.metric_log_pack().await.unwrap();
    let counters = c.metric_get_common("q").await.unwrap();
    assert_eq!(
        (counters.rejected, counters.errors, counters.dead),
        (3, 3, 1)
    );
    assert_counters_exact(&db).await;
}

#[tokio::test]
async fn expired_leases_are_rescued_then_dead_after_max_attempts() {
    let db = setup().await;
    let c = &db.client;
    c.queue_set_max_attempts("q", 2).await.unwrap();
    c.push("q", &NewDoc::new("crashy")).await.unwrap();
    let lease = PickOptions::new().lease(Duration::from_millis(50));

    let first = c.pick("q", &lease).await.unwrap().remove(0);
    assert_eq!(first.attempts, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pass = c.mnt_run("q", 100).await.unwrap();
    assert_eq!((pass.rescheduled, pass.killed), (1, 0));
    assert_eq!(c.get("q", "crashy").await.unwrap().status, Status::Pending);

    let second = c.pick("q", &lease).await.unwrap().remove(0);
    assert_eq!(second.attempts, 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pass = c.mnt_run("q", 100).await.unwrap();
    assert_eq!((pass.rescheduled, pass.killed), (0, 1));
    assert_eq!(c.get("q", "crashy").await.unwrap().status, Status::Dead);
    assert_eq!(
        logs(&db, "crashy").await.len(),
        2,
        "every orphan writes a log row"
    );
    c.metric_log_pack().await.unwrap();
    assert_eq!(c.metric_get_common("q").await.unwrap().orphans, 2);
    assert_counters_exact(&db).await;
}

#[tokio::test]
async fn a_document_migrates_to_the_next_version() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("a").payload(json!({"name": "Tony"})))
        .await
        .unwrap();
    let doc = c
        .pick("q", &PickOptions::new().version(0))
        .await
        .unwrap()
        .remove(0);
    c.migrate_version(
        &doc.lease,
        1,
        Some(&json!({"first_name": "Tony"})),
        Schedule::now(),
    )
    .await
    .unwrap();
    assert!(
        c.pick("q", &PickOptions::new().version(0))
            .await
            .unwrap()
            .is_empty()
    );
    let v1 = c
        .pick("q", &PickOptions::new().version(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (v1.version, v1.payload.clone()),
        (1, json!({"first_name": "Tony"}))
    );
    c.metric_log_pack().await.unwrap();
    let v: Vec<(String, i64)> = sqlx::query_as(
        "SELECT metric::text, current_value FROM fetchq.metric_get('q') WHERE metric IN ('v0', 'v1') ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(v, [("v0".to_owned(), 0), ("v1".to_owned(), 1)]);
}

#[tokio::test]
async fn connect_with_sizes_the_pool_and_refuses_zero() {
    let db = TestDb::new().await;
    let client = Client::connect_with(&db.url(), 3).await.unwrap();
    assert_eq!(client.pool().options().get_max_connections(), 3);
    assert!(client.queue_list().await.is_ok());
    match Client::connect_with(&db.url(), 0).await {
        Err(fetchq_core::Error::InvalidArgument { message }) => {
            assert!(message.contains("at least 1"), "{message}")
        }
        Err(other) => panic!("expected InvalidArgument, got {other}"),
        Ok(_) => panic!("0 connections accepted"),
    }
    // the re-exported sqlx builds a pool of any size for Client::new
    let pool = fetchq_core::sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url())
        .await
        .unwrap();
    let now: fetchq_core::chrono::DateTime<fetchq_core::chrono::Utc> =
        fetchq_core::sqlx::query_scalar("SELECT now()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(now.timestamp() > 0);
    assert!(Client::new(pool).queue_list().await.is_ok());
}
