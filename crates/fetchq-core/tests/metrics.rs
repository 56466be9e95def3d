//! Counters stay exact without counting documents; user metrics; snapshots.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{NewDoc, PickOptions, Schedule};
use fetchq_testing::TestDb;

#[tokio::test]
async fn counters_match_a_real_count_after_a_mixed_workload() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.queue_set_max_attempts("q", 2).await.unwrap();
    c.queue_set_retry_backoff("q", Duration::ZERO, Duration::ZERO, 0.0)
        .await
        .unwrap();
    let docs: Vec<NewDoc> = (0..300)
        .map(|i| {
            let doc = NewDoc::new(format!("d{i}")).version(i % 3);
            if i % 4 == 0 {
                doc.at(Duration::from_secs(3600))
            } else {
                doc
            }
        })
        .collect();
    c.push_many("q", &docs).await.unwrap();
    c.push("q", &NewDoc::new("d1")).await.unwrap(); // duplicate
    for version in 0..3 {
        let picked = c
            .pick("q", &PickOptions::new().version(version).limit(60))
            .await
            .unwrap();
        for (i, doc) in picked.iter().enumerate() {
            let l = &doc.lease;
            match i % 6 {
                0 => c.complete(l, None).await.unwrap(),
                1 => c.kill(l, None).await.unwrap(),
                2 => c.drop_doc(l).await.unwrap(),
                3 => c.reject(l, "nope", None, None).await.unwrap(),
                4 => c
                    .reschedule(l, Schedule::after(Duration::from_secs(60)), None)
                    .await
                    .unwrap(),
                _ => {} // stays active
            }
        }
    }
    c.metric_log_pack().await.unwrap();
    let counters = c.metric_get_common("q").await.unwrap();
    let truth = c.metric_compute("q").await.unwrap();
    assert_eq!(counters.status_counts(), truth);
    assert!(truth.active > 0 && truth.dead > 0 && truth.completed > 0 && truth.planned > 0);
    assert_eq!(counters.entered, 300);
    assert_eq!(counters.total, 300 - counters.dropped);

    // per-version counters follow drops too
    let versions: i64 = sqlx::query_scalar(
        "SELECT sum(current_value)::bigint FROM fetchq.metric_get('q') WHERE metric ~ '^v[0-9]+$'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(versions, truth.total);

    // metric_reset repairs tampered counters from the truth
    sqlx::query("UPDATE fetchq.metrics SET value = 999 WHERE queue = 'q' AND metric = 'cnt'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(c.metric_reset("q").await.unwrap(), truth);
    assert_eq!(c.metric_get_common("q").await.unwrap().total, truth.total);
}

#[tokio::test]
async fn user_metrics_increment_and_set_on_any_name() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.metric_log_increment("crawler", "pages", 5).await.unwrap();
    c.metric_log_increment("crawler", "pages", -2)
        .await
        .unwrap();
    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get("crawler", "pages")
            .await
            .unwrap()
            .unwrap()
            .value,
        3
    );

    // a set replaces what came before it, increments after it add up
    c.metric_log_increment("crawler", "pages", 10)
        .await
        .unwrap();
    c.metric_log_set("crawler", "pages", 100).await.unwrap();
    c.metric_log_increment("crawler", "pages", 1).await.unwrap();
    c.metric_log_pack().await.unwrap();
    assert_eq!(
        c.metric_get("crawler", "pages")
            .await
            .unwrap()
            .unwrap()
            .value,
        101
    );
    assert!(c.metric_get("crawler", "never").await.unwrap().is_none());
    let names: Vec<String> = c
        .metric_list("crawler")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.metric)
        .collect();
    assert_eq!(names, ["pages"]);
    assert!(c.metric_log_increment("crawler", "", 1).await.is_err());
}

#[tokio::test]
async fn metric_reads_never_count_documents() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.push_many(
        "q",
        &(0..50)
            .map(|i| NewDoc::new(format!("{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    c.metric_log_pack().await.unwrap();
    // rows this transaction read from the documents table, by scan or index
    const TOUCHED: &str = "SELECT pg_stat_get_xact_tuples_returned('fetchq_data.q__docs'::regclass)
                                + pg_stat_get_xact_tuples_fetched('fetchq_data.q__docs'::regclass)";
    let mut tx = db.pool.begin().await.unwrap();
    for _ in 0..20 {
        let total: i64 = sqlx::query_scalar("SELECT cnt FROM fetchq.metric_get_common('q')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(total, 50);
    }
    let touched: i64 = sqlx::query_scalar(TOUCHED)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(touched, 0, "metric reads read documents");
    // control: a real count does register
    sqlx::query("SELECT * FROM fetchq.metric_compute('q')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let touched: i64 = sqlx::query_scalar(TOUCHED)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(touched >= 50, "the measurement sees a COUNT ({touched})");
}

#[tokio::test]
async fn snapshots_record_the_counters_as_a_time_series() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("a")).await.unwrap();
    c.metric_log_pack().await.unwrap();
    let n = c.metric_snap("q").await.unwrap();
    assert!(n >= 4, "cnt, ent, pnd, v0 at least; got {n}");
    let cnt: i64 =
        sqlx::query_scalar("SELECT value FROM fetchq_data.q__metrics WHERE metric = 'cnt'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(cnt, 1);
    // retention thins old snapshots to one per bucket and drops what is older than every window
    sqlx::query(
        "INSERT INTO fetchq_data.q__metrics (created_at, metric, value)
         SELECT now() - interval '2 days' + (i * interval '1 second'), 'cnt', i FROM generate_series(1, 10) AS i
         UNION ALL SELECT now() - interval '400 days', 'cnt', 0",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let removed: i32 =
        sqlx::query_scalar("SELECT removed_rows FROM fetchq.queue_drop_metrics('q')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(removed, 10, "9 thinned within one hour bucket, 1 too old");
}
