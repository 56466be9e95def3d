//! Schema 15: timers (count, sum, histogram) stored next to the core
//! counters, exact at read, in batches; batched counter increments.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{Error, MetricBatch, TIMER_BUCKETS_MS, timers_from_export};
use fetchq_testing::TestDb;

fn ms(n: f64) -> Duration {
    Duration::from_secs_f64(n / 1000.0)
}

#[tokio::test]
async fn timers_count_sum_and_buckets_exact_at_read() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    for t in [0.5, 1.0, 2.0, 7.0, 7.5, 120.0, 90_000.0] {
        c.metric_time("q", "fetch", ms(t)).await.unwrap();
    }
    // no pack ran: read adds the pending writes
    let t = c.timer_get("q", "fetch").await.unwrap();
    assert_eq!(t.count, 7);
    assert!((t.sum_ms - 90_138.0).abs() < 0.01, "{}", t.sum_ms);
    let cum = |le: f64| t.buckets.iter().find(|b| b.0 == le).unwrap().1;
    assert_eq!(cum(1.0), 2); // 0.5 and 1.0 (upper bounds are inclusive)
    assert_eq!(cum(2.5), 3);
    assert_eq!(cum(5.0), 3);
    assert_eq!(cum(10.0), 5);
    assert_eq!(cum(100.0), 5);
    assert_eq!(cum(250.0), 6);
    assert_eq!(cum(60_000.0), 6);
    assert_eq!(cum(f64::INFINITY), 7);
    assert_eq!(t.buckets.len(), TIMER_BUCKETS_MS.len() + 1);

    // the same after a pack, and after more writes on top of it
    c.metric_log_pack().await.unwrap();
    assert_eq!(c.timer_get("q", "fetch").await.unwrap(), t);
    c.metric_time("q", "fetch", ms(3.0)).await.unwrap();
    let t2 = c.timer_get("q", "fetch").await.unwrap();
    assert_eq!(t2.count, 8);
    assert_eq!(t2.buckets[2].1, 4); // <= 5 ms

    // the export carries them (one read) and decodes to the same
    let export = c.metric_export().await.unwrap();
    let decoded = timers_from_export(&export);
    assert_eq!(decoded, vec![t2.clone()]);
    assert_eq!(c.timer_list(None).await.unwrap(), vec![t2.clone()]);
    assert_eq!(c.timer_list(Some("q")).await.unwrap(), vec![t2]);
    // a timer never written
    let none = c.timer_get("q", "nope").await.unwrap();
    assert_eq!(none.count, 0);
    assert!(none.buckets.iter().all(|b| b.1 == 0));
}

#[tokio::test]
async fn sql_bucket_bounds_match_the_client() {
    let db = TestDb::new().await;
    let bounds: Vec<f64> = sqlx::query_scalar("SELECT fetchq.timer_buckets()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(bounds, TIMER_BUCKETS_MS.to_vec());
    // and from SQL: the scalar form and timer_get
    sqlx::query("SELECT fetchq.metric_time('q', 'sql_timer', 12.5)")
        .execute(&db.pool)
        .await
        .unwrap();
    let (count, sum_ms): (i64, f64) =
        sqlx::query_as("SELECT count, sum_ms FROM fetchq.timer_get('q', 'sql_timer')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((count, sum_ms), (1, 12.5));
}

#[tokio::test]
async fn a_batch_is_folded_into_few_writes() {
    let db = TestDb::new().await;
    let c = &db.client;
    let mut b = MetricBatch::default();
    for i in 0..1000 {
        b.time("q", "hot", ms(f64::from(i % 3) + 0.5)).unwrap(); // 0.5, 1.5, 2.5 ms
        b.increment("q", "seen", 1).unwrap();
    }
    b.increment("r", "seen", -2).unwrap();
    let written = c.metric_write_batch(&b).await.unwrap();
    // q/seen, r/seen, the sum, and two buckets (<= 1 ms, <= 2.5 ms)
    assert_eq!(written, 5);
    let t = c.timer_get("q", "hot").await.unwrap();
    assert_eq!(t.count, 1000);
    assert_eq!(t.buckets[0].1, 334);
    assert_eq!(t.buckets[1].1, 1000);
    assert_eq!(
        c.metric_get("q", "seen").await.unwrap().unwrap().value,
        1000
    );
    assert_eq!(c.metric_get("r", "seen").await.unwrap().unwrap().value, -2);
    assert_eq!(
        c.metric_write_batch(&MetricBatch::default()).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn bad_names_and_times_are_typed_errors() {
    let db = TestDb::new().await;
    let c = &db.client;
    for name in ["", "has space", "a/b", "9lives", "é", &"x".repeat(65)] {
        let e = c.metric_time("q", name, ms(1.0)).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{name}: {e:?}");
        assert!(!e.is_transient());
        let e = c.timer_get("q", name).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{name}: {e:?}");
    }
    let e = c
        .metric_time("q", "t", Duration::from_secs(2_000_000))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(matches!(
        c.metric_time("Q!", "t", ms(1.0)).await.unwrap_err(),
        Error::InvalidQueueName { .. }
    ));
    // the engine checks too (callers from SQL), with the same codes
    for sql in [
        "SELECT fetchq.metric_time('q', 'bad name', 1)",
        "SELECT fetchq.metric_time('q', 't', -1)",
        "SELECT fetchq.metric_time('q', 't', 'NaN'::float8)",
        "SELECT fetchq.metric_time('q', 't', 'Infinity'::float8)",
        "SELECT fetchq.metric_time('q', 't', NULL::float8)",
        "SELECT fetchq.metric_time(ARRAY['q', 'q'], ARRAY['t'], ARRAY[1, 2]::float8[])",
        "SELECT fetchq.metric_time(ARRAY['q', 'q'], ARRAY['t', 'x y'], ARRAY[1, 2]::float8[])",
        "SELECT fetchq.metric_log_increment('q', '~t/t/b1', 5)",
        "SELECT fetchq.metric_log_set('q', '~t/t/us', 5)",
        "SELECT fetchq.metric_log_increment(ARRAY['q'], ARRAY['~t/t/b1'], ARRAY[5]::bigint[])",
        "SELECT fetchq.timer_get('q', 'a/b')",
    ] {
        let e = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
        let e = Error::from(e);
        assert!(matches!(e, Error::InvalidArgument { .. }), "{sql}: {e:?}");
    }
    // nothing of the refused batch was written: the good element included
    assert_eq!(c.timer_get("q", "t").await.unwrap().count, 0);
    // a counter named like a timer cannot be forged through the client
    assert!(c.metric_log_increment("q", "~t/t/b1", 1).await.is_err());
    let mut b = MetricBatch::default();
    assert!(b.increment("q", "~t/t/b1", 1).is_err());
    assert!(b.increment("q", "nul\0", 1).is_err());
    assert!(b.is_empty());
}

#[tokio::test]
async fn dropping_or_emptying_the_queue_drops_its_timers() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.queue_create("r").await.unwrap();
    c.metric_time("q", "t", ms(5.0)).await.unwrap();
    c.metric_time("r", "t", ms(5.0)).await.unwrap();
    c.metric_log_pack().await.unwrap();
    c.metric_time("q", "t", ms(5.0)).await.unwrap();
    c.queue_drop("q").await.unwrap();
    let all = c.timer_list(None).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].queue, "r");
    // counters and timers of the remaining queue are untouched by a reset
    c.metric_reset("r").await.unwrap();
    assert_eq!(c.timer_get("r", "t").await.unwrap().count, 1);
}
