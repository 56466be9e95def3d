//! Schema 13: counters exact at read without a pack, the kill counter, the
//! lag of a queue, and the exporter's one read.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{NewDoc, PickOptions, Schedule};
use fetchq_testing::TestDb;

/// Nothing packs in these tests: no worker, no maintenance. This makes sure
/// (the lgp job exists but only `mnt`/`mnt_job_run` would run it).
async fn pending_writes(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM fetchq.metrics_writes")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn workload(c: &fetchq_core::Client, q: &str) {
    fetchq_testing::mixed_workload(c, q, 120).await;
}

#[tokio::test]
async fn counters_are_exact_at_read_without_any_pack() {
    let db = TestDb::new().await;
    let c = &db.client;
    workload(c, "q").await;
    assert!(pending_writes(&db).await > 0, "the writes are not packed");
    let truth = c.metric_compute("q").await.unwrap();
    assert!(truth.active > 0 && truth.dead > 0 && truth.completed > 0 && truth.planned > 0);
    let counters = c.metric_get_common("q").await.unwrap();
    assert_eq!(counters.status_counts(), truth);
    assert_eq!(counters.entered, 120);
    assert_eq!(counters.picked, 80);
    assert_eq!(counters.total, 120 - counters.dropped);
    // single reads and the list agree
    assert_eq!(
        c.metric_get("q", "pnd").await.unwrap().unwrap().value,
        truth.pending
    );
    let list = c.metric_list("q").await.unwrap();
    let cpl = list.iter().find(|m| m.metric == "cpl").unwrap();
    assert_eq!(cpl.value, truth.completed);
    assert!(cpl.updated_at.is_some());
    // the kill counter: kills by the worker and rejects past max_attempts
    let kld = c.metric_get("q", "kld").await.unwrap().unwrap().value;
    assert_eq!(kld, truth.dead);
    // v4 callers too
    let (total,): (i64,) =
        sqlx::query_as("SELECT current_value FROM fetchq.metric_get_total('cnt')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(total, truth.total);
    c.queue_create("empty").await.unwrap();
    let all: Vec<(String, i64, i64, i64)> =
        sqlx::query_as("SELECT queue::text, pnd, kll, ent FROM fetchq.metric_get_all()")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        all,
        vec![
            ("empty".into(), 0, 0, 0),
            ("q".into(), truth.pending, truth.dead, 120)
        ]
    );
    // and a pack changes nothing
    let before = c.metric_list("q").await.unwrap();
    c.metric_log_pack().await.unwrap();
    assert_eq!(pending_writes(&db).await, 0);
    let after = c.metric_list("q").await.unwrap();
    let values = |v: &[fetchq_core::MetricValue]| -> Vec<(String, i64)> {
        v.iter().map(|m| (m.metric.clone(), m.value)).collect()
    };
    assert_eq!(values(&before), values(&after));
}

#[tokio::test]
async fn exact_after_a_repair_and_with_a_set_pending() {
    let db = TestDb::new().await;
    let c = &db.client;
    workload(c, "q").await;
    // a repair writes the status counters directly and drops their pending writes
    c.metric_reset("q").await.unwrap();
    // more writes after it, not packed
    c.push_many(
        "q",
        &(0..7)
            .map(|i| NewDoc::new(format!("late{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let picked = c.pick("q", &PickOptions::new().limit(3)).await.unwrap();
    c.complete(&picked[0].lease, None).await.unwrap();
    assert!(pending_writes(&db).await > 0);
    let truth = c.metric_compute("q").await.unwrap();
    assert_eq!(
        c.metric_get_common("q").await.unwrap().status_counts(),
        truth
    );

    // a user counter: packed 5, then +3, then set to 100 and +2, all pending
    c.metric_log_increment("q", "custom", 5).await.unwrap();
    c.metric_log_pack().await.unwrap();
    c.metric_log_increment("q", "custom", 3).await.unwrap();
    assert_eq!(c.metric_get("q", "custom").await.unwrap().unwrap().value, 8);
    c.metric_log_set("q", "custom", 100).await.unwrap();
    c.metric_log_increment("q", "custom", 2).await.unwrap();
    assert_eq!(
        c.metric_get("q", "custom").await.unwrap().unwrap().value,
        102
    );
    // two sets pending: the last wins
    c.metric_log_set("q", "custom", 40).await.unwrap();
    c.metric_log_increment("q", "custom", -1).await.unwrap();
    assert_eq!(
        c.metric_get("q", "custom").await.unwrap().unwrap().value,
        39
    );
    // a counter only written, never packed, exists
    c.metric_log_increment("q", "fresh", 4).await.unwrap();
    assert_eq!(c.metric_get("q", "fresh").await.unwrap().unwrap().value, 4);
    assert!(c.metric_get("q", "never").await.unwrap().is_none());
    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get("q", "custom").await.unwrap().unwrap().value,
        39
    );
    assert_eq!(c.metric_get("q", "fresh").await.unwrap().unwrap().value, 4);
    assert_eq!(
        c.metric_get_common("q").await.unwrap().status_counts(),
        truth
    );
}

#[tokio::test]
async fn lag_is_the_age_of_the_oldest_due_document() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    assert_eq!(c.queue_lag("q").await.unwrap(), Duration::ZERO);
    // planned in the future: not due, no lag
    c.push("q", &NewDoc::new("later").at(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(c.queue_lag("q").await.unwrap(), Duration::ZERO);
    // pending documents over versions and priorities; the oldest sits last
    // in pick order (highest version, lowest priority)
    let ago = |s: i64| Schedule::at(chrono::Utc::now() - chrono::Duration::seconds(s));
    for (i, (version, priority, age)) in
        [(0, 5, 10), (0, 0, 20), (1, 9, 5), (2, 3, 30), (2, -7, 600)]
            .into_iter()
            .enumerate()
    {
        c.push(
            "q",
            &NewDoc::new(format!("p{i}"))
                .version(version)
                .priority(priority)
                .at(ago(age)),
        )
        .await
        .unwrap();
    }
    let lag = c.queue_lag("q").await.unwrap().as_secs_f64();
    assert!((599.0..700.0).contains(&lag), "lag {lag}");
    // a planned document whose time came long ago (not promoted yet) counts
    sqlx::query(
        "UPDATE fetchq_data.q__docs SET next_iteration = now() - interval '2 hours' WHERE subject = 'later'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let lag = c.queue_lag("q").await.unwrap().as_secs_f64();
    assert!((7199.0..7300.0).contains(&lag), "lag {lag}");
    // active documents are not due
    sqlx::query(
        "UPDATE fetchq_data.q__docs SET status = 2, next_iteration = now() - interval '9 hours'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(c.queue_lag("q").await.unwrap(), Duration::ZERO);
    assert!(matches!(
        c.queue_lag("nope").await,
        Err(fetchq_core::Error::QueueNotFound { .. })
    ));
    assert!(c.queue_lag("Bad Name").await.is_err());
}

const STATE: [&str; 4] = ["paused", "current_version", "error_log_rows", "lag_seconds"];

#[tokio::test]
async fn export_reads_every_queue_at_once() {
    let db = TestDb::new().await;
    let c = &db.client;
    workload(c, "a").await;
    c.queue_create("b").await.unwrap();
    c.queue_pause("b").await.unwrap();
    c.log_error("a", "s1", "boom", None, None).await.unwrap();
    c.log_error("a", "s2", "boom", None, None).await.unwrap();
    c.metric_log_increment("a", "custom", 3).await.unwrap();
    // a user counter named like a state row stays apart from it
    c.metric_log_increment("b", "paused", 42).await.unwrap();
    // a name that is not a queue is not exported
    c.metric_log_increment("ghost", "custom", 1).await.unwrap();
    let values = c.metric_export().await.unwrap();
    let get = |q: &str, m: &str| {
        values
            .iter()
            .find(|v| v.queue == q && v.metric == m && v.counter != STATE.contains(&m))
            .map(|v| v.value)
    };
    let truth = c.metric_compute("a").await.unwrap();
    let logs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.a__logs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(logs > 2, "rejects log too");
    assert_eq!(get("a", "pnd"), Some(truth.pending as f64));
    assert_eq!(get("a", "kll"), Some(truth.dead as f64));
    assert_eq!(get("a", "custom"), Some(3.0));
    assert_eq!(get("a", "paused"), Some(0.0));
    assert_eq!(get("b", "paused"), Some(1.0));
    assert!(
        values
            .iter()
            .any(|v| v.queue == "b" && v.metric == "paused" && v.counter && v.value == 42.0)
    );
    assert_eq!(get("a", "error_log_rows"), Some(logs as f64));
    assert_eq!(get("b", "error_log_rows"), Some(0.0));
    assert_eq!(get("b", "lag_seconds"), Some(0.0));
    assert!(get("a", "lag_seconds").is_some());
    assert!(values.iter().all(|v| v.queue != "ghost"));
    c.queue_drop("a").await.unwrap();
    let values = c.metric_export().await.unwrap();
    assert!(values.iter().all(|v| v.queue == "b"), "{values:?}");
}

/// A pack committing while reads run is seen entirely or not at all: the
/// count read never goes back and never runs ahead of the pushes.
#[tokio::test]
async fn reads_during_packs_never_count_twice() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    let pusher = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                c.push("q", &NewDoc::new(format!("d{i}"))).await.unwrap();
            }
        })
    };
    let packer = {
        let c = c.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                c.metric_log_pack().await.unwrap();
            }
        })
    };
    let mut last = 0;
    let mut reads = 0;
    while !pusher.is_finished() || !packer.is_finished() {
        let n = c.metric_get_common("q").await.unwrap().total;
        assert!(n >= last && n <= 300, "read {n} after {last}");
        last = n;
        reads += 1;
    }
    pusher.await.unwrap();
    packer.await.unwrap();
    assert!(reads > 10, "the reads overlapped the packs ({reads})");
    assert_eq!(c.metric_get_common("q").await.unwrap().total, 300);
}
