//! Maintenance jobs: safe from many processes at once, errors recorded, not swallowed.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{NewDoc, PickOptions};
use fetchq_testing::TestDb;

#[tokio::test]
async fn mnt_runs_every_queue_job_and_packs() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("a").await.unwrap();
    c.queue_create("b").await.unwrap();
    c.push("a", &NewDoc::new("x")).await.unwrap();
    let (processed, packed) = c.mnt().await.unwrap();
    assert!(
        processed >= 6,
        "mnt, sts and drp of both queues; got {processed}"
    );
    assert!(packed >= 0);
    assert_eq!(c.metric_get_common("a").await.unwrap().total, 1);
    let snaps: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.a__metrics")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(snaps > 0, "the sts job wrote a snapshot");
}

#[tokio::test]
async fn concurrent_maintenance_rescues_each_orphan_once() {
    let db = TestDb::with_pool_size(12).await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push_many(
        "q",
        &(0..500)
            .map(|i| NewDoc::new(format!("{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    c.pick(
        "q",
        &PickOptions::new()
            .limit(500)
            .lease(Duration::from_millis(10)),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.mnt_run("q", 100).await.unwrap().rescheduled })
        })
        .collect();
    let mut rescued = 0;
    for r in runs {
        rescued += r.await.unwrap();
    }
    // whatever the first passes missed, a last pass takes
    rescued += c.mnt_run("q", 1000).await.unwrap().rescheduled;
    assert_eq!(rescued, 500);
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.q__logs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(logged, 500);
    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get_common("q").await.unwrap().status_counts(),
        c.metric_compute("q").await.unwrap()
    );
}

#[tokio::test]
async fn a_failing_job_is_recorded_and_the_others_still_run() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    sqlx::query("INSERT INTO fetchq.jobs (task, queue) VALUES ('bogus', 'q')")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE fetchq.jobs SET next_iteration = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .unwrap();
    let run = c.mnt_job_run(Duration::from_secs(60), 100).await.unwrap();
    assert!(!run.success);
    assert_eq!(run.processed, 5, "lgp + mnt, sts, drp + bogus");
    let err: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM fetchq.jobs WHERE task = 'bogus'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(err.unwrap_or_default().contains("unknown maintenance task"));
    let ok: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fetchq.jobs WHERE task <> 'bogus' AND iterations = 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(ok, 4);
}

#[tokio::test]
async fn tables_with_many_dead_rows_are_vacuumed() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("churn").await.unwrap();
    c.queue_create("calm").await.unwrap();
    c.push_many(
        "churn",
        &(0..3000)
            .map(|i| NewDoc::new(format!("{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    db.churn("fetchq_data.churn__docs", 3).await;
    let dead = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn__docs'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let start = std::time::Instant::now();
    while dead().await < 1000 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "statistics never showed the dead rows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let vacuumed = c.vacuum_hot_tables().await.unwrap();
    assert!(
        vacuumed.contains(&"fetchq_data.churn__docs".to_owned()),
        "{vacuumed:?}"
    );
    assert!(
        !vacuumed.iter().any(|t| t.contains("calm")),
        "a calm queue is left alone"
    );
    assert_eq!(dead().await, 0);
    let vacuums: i64 = sqlx::query_scalar(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'churn__docs'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(vacuums, 1);
    assert!(
        c.vacuum_hot_tables().await.unwrap().is_empty(),
        "nothing left to do"
    );
}
