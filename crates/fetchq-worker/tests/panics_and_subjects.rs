//! Handlers that panic (a string, a `String`, a non-string payload, after an
//! await) reject only their document; the same subjects in two queues are
//! two documents, leased, heartbeated and settled apart.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::time::Duration;

use fetchq_core::{NewDoc, Status};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{count, error_logs, eventually, handler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_panic_rejects_its_document_and_the_pool_goes_on() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    let subjects = ["str", "string", "number", "after-await", "ok"];
    for s in subjects {
        c.push("q", &NewDoc::new(s)).await.unwrap();
    }
    let h = handler(HandlerOptions::new("q").concurrency(2), |doc, _ctx| {
        Box::pin(async move {
            match doc.subject.as_str() {
                "str" => panic!("a str"),
                "string" => std::panic::panic_any(format!("a String for {}", doc.subject)),
                "number" => std::panic::panic_any(42_u32),
                "after-await" => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    panic!("after an await")
                }
                _ => Ok(Outcome::complete()),
            }
        })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "all resolved", || async {
        let s = stats.total();
        s.rejected + s.completed == 5
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.total();
    assert_eq!((s.completed, s.rejected, s.failed), (1, 4, 4), "{s:?}");
    for (subject, says) in [
        ("str", "handler panicked: a str"),
        ("string", "handler panicked: a String for string"),
        ("number", "handler panicked: non-string panic payload"),
        ("after-await", "handler panicked: after an await"),
    ] {
        let logs = error_logs(&c, "q", subject).await;
        assert!(logs.iter().any(|m| m == says), "{subject}: {logs:?}");
        assert_ne!(c.get("q", subject).await.unwrap().status, Status::Completed);
    }
    assert_eq!(c.get("q", "ok").await.unwrap().status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_subjects_in_two_queues_are_held_and_settled_apart() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    let docs: Vec<NewDoc> = (0..60).map(|i| NewDoc::new(format!("s{i:02}"))).collect();
    for q in ["a", "b"] {
        c.queue_create(q).await.unwrap();
        c.push_many(q, &docs).await.unwrap();
    }
    // queue a completes at once; queue b outlives its 1 s lease (heartbeated)
    let opts = |q: &str| {
        HandlerOptions::new(q)
            .concurrency(60)
            .lease(Duration::from_secs(1))
    };
    let a = handler(opts("a"), |_doc, _ctx| {
        Box::pin(async move { Ok(Outcome::complete()) })
    });
    let b = handler(opts("b"), |_doc, _ctx| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok(Outcome::complete())
        })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .register(a)
        .register(b);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "both queues drained", || async {
        stats.total().completed == 120
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.total();
    assert_eq!((s.picked, s.lease_lost, s.rejected), (120, 0, 0), "{s:?}");
    for q in ["a", "b"] {
        assert_eq!(count(&c, q, 3).await, 60, "{q}");
    }
}
