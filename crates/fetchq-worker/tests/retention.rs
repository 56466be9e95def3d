//! The runtime with completed-document retention (schema 20): its completer
//! deletes the documents of an at-once queue, and its maintenance leader
//! deletes those of a queue that keeps them for a while.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::time::Duration;

use fetchq_core::{Client, NewDoc, Retention};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{eventually, handler};

async fn rows(client: &Client, queue: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM fetchq_data.{queue}__docs"))
        .fetch_one(client.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_runtime_deletes_at_once_and_its_leader_deletes_later() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    for (q, r) in [
        ("mails", Retention::AtOnce),
        ("jobs", Retention::After(Duration::from_micros(1))),
        ("kept", Retention::Keep),
    ] {
        c.queue_create(q).await.unwrap();
        c.queue_set_completed_retention(q, r).await.unwrap();
        c.push_many(
            q,
            &(0..200)
                .map(|i| NewDoc::new(format!("d{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }
    let mut rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(Some(Duration::from_millis(200)));
    for q in ["mails", "jobs", "kept"] {
        rt = rt.register(handler(
            HandlerOptions::new(q).concurrency(4).batch(8),
            |_doc, _ctx| Box::pin(async { Ok(Outcome::complete()) }),
        ));
    }
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "every queue processed", || async {
        let mut done = true;
        for q in ["mails", "jobs", "kept"] {
            done &= c.metric_get_common(q).await.unwrap().processed == 200;
        }
        done
    })
    .await;
    eventually(
        Duration::from_secs(60),
        "the leader cleans jobs",
        || async { rows(&c, "jobs").await == 0 },
    )
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(stats.total().completed, 600);
    assert_eq!(rows(&c, "mails").await, 0);
    assert_eq!(rows(&c, "kept").await, 200);
    c.metric_log_pack().await.unwrap();
    for q in ["mails", "jobs", "kept"] {
        let counters = c.metric_get_common(q).await.unwrap();
        assert_eq!(
            counters.status_counts(),
            c.metric_compute(q).await.unwrap(),
            "{q}"
        );
        assert_eq!(counters.processed, 200, "{q}");
    }
    // a subject deleted at once comes back as new work
    assert!(c.push("mails", &NewDoc::new("d0")).await.unwrap());
    assert!(!c.push("kept", &NewDoc::new("d0")).await.unwrap());
}
