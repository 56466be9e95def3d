//! Custom counters and timers recorded by handlers (`ctx.time`,
//! `ctx.metric_increment`), written with the outcomes.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::time::Duration;

use fetchq_core::{Error, NewDoc};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{eventually, handler};

#[tokio::test]
async fn handlers_record_timers_and_counters_and_bad_names_do_not_wedge_outcomes() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..300).map(|i| NewDoc::new(format!("d{i}"))).collect();
    c.push_many("q", &docs).await.unwrap();
    let h = handler(
        HandlerOptions::new("q").concurrency(8).batch(8),
        move |doc, ctx| {
            Box::pin(async move {
                let n: u32 = doc.subject[1..].parse().unwrap();
                let v = ctx
                    .time("work", async {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        n
                    })
                    .await;
                assert_eq!(v, n);
                ctx.metric_increment("seen", 1).unwrap();
                // every third document also carries poison: refused at once,
                // typed, and nothing of it reaches the batch
                if n.is_multiple_of(3) {
                    let bad = ctx.time("bad name/with slash", async { 7 }).await;
                    assert_eq!(bad, 7);
                    assert!(matches!(
                        ctx.metric_increment("~t/work/us", 1_000_000),
                        Err(Error::InvalidArgument { .. })
                    ));
                    assert!(ctx.metric_time("nul\0", Duration::ZERO).is_err());
                    assert!(ctx.metric_increment("", 1).is_err());
                    assert!(
                        ctx.metric_time("huge", Duration::from_secs(10_000_000))
                            .is_err()
                    );
                }
                Ok(Outcome::complete())
            })
        },
    );
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "300 completed", || async {
        c.metric_compute("q").await.unwrap().completed == 300
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(stats.total().completed, 300);
    // written before shutdown returned: exact now
    let t = c.timer_get("q", "work").await.unwrap();
    assert_eq!(t.count, 300);
    assert!(t.sum_ms >= 300.0 * 2.0, "sum {}", t.sum_ms);
    assert_eq!(t.buckets[0].1, 0, "nothing took <= 1 ms: {:?}", t.buckets);
    assert_eq!(c.metric_get("q", "seen").await.unwrap().unwrap().value, 300);
    let timers = c.timer_list(Some("q")).await.unwrap();
    assert_eq!(timers.len(), 1, "{timers:?}");
}

#[tokio::test]
async fn a_context_caps_what_one_document_records() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("a")).await.unwrap();
    let doc = c
        .pick("q", &fetchq_core::PickOptions::new())
        .await
        .unwrap()
        .pop()
        .unwrap();
    let ctx = fetchq_worker::Context::new(c.clone(), doc.lease.clone());
    for _ in 0..fetchq_worker::MAX_METRICS_PER_DOC {
        ctx.metric_increment("loop", 1).unwrap();
    }
    assert!(matches!(
        ctx.metric_increment("loop", 1),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(
        ctx.recorded_metrics().len(),
        fetchq_worker::MAX_METRICS_PER_DOC
    );
    // what was recorded goes in one write
    assert_eq!(
        c.metric_write_batch(&ctx.recorded_metrics()).await.unwrap(),
        1
    );
    assert_eq!(
        c.metric_get("q", "loop").await.unwrap().unwrap().value,
        fetchq_worker::MAX_METRICS_PER_DOC as i64
    );
}
