//! `#[fetchq::handler]` functions run by the runtime on a real database.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::{Duration, Instant};

use fetchq::{NewDoc, Runtime, Status};
use fetchq_testing::TestDb;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Profile {
    handle: String,
    visits: u32,
}

#[fetchq::handler(queue = "avengers", concurrency = 4, lease = "30s")]
async fn scrape(
    doc: fetchq::Doc<Profile>,
    ctx: fetchq::Context,
) -> fetchq::Result<fetchq::Outcome> {
    if doc.payload.handle == "missing" {
        return Err(fetchq::HandlerError::new("HTTP 404"));
    }
    ctx.client()
        .push(
            "avengers",
            &NewDoc::new("discovered").payload(json!({"handle": "d", "visits": 0})),
        )
        .await?;
    let next = Profile {
        visits: doc.payload.visits + 1,
        ..doc.payload
    };
    fetchq::Outcome::reschedule_in(Duration::from_secs(3600)).with_payload_from(&next)
}

#[tokio::test]
async fn macro_handlers_run_reschedule_reject_and_report_bad_payloads() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("avengers").await.unwrap();
    c.push(
        "avengers",
        &NewDoc::new("ironman").payload(json!({"handle": "tony", "visits": 0})),
    )
    .await
    .unwrap();
    c.push(
        "avengers",
        &NewDoc::new("ghost").payload(json!({"handle": "missing", "visits": 0})),
    )
    .await
    .unwrap();
    c.push(
        "avengers",
        &NewDoc::new("broken").payload(json!({"handle": 42})),
    )
    .await
    .unwrap();

    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .register(scrape);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    let start = Instant::now();
    while stats.total().rescheduled < 2 || stats.total().rejected < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "stats: {:?}",
            stats.total()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
    run.await.unwrap().unwrap();

    let ironman = c.get("avengers", "ironman").await.unwrap();
    assert_eq!(
        (ironman.status, ironman.payload["visits"].as_i64()),
        (Status::Planned, Some(1))
    );
    assert_eq!(
        c.get("avengers", "discovered").await.unwrap().iterations,
        1,
        "discovered once, pushed twice"
    );
    let logs: Vec<(String, String)> = sqlx::query_as(
        "SELECT subject::text, message FROM fetchq_data.avengers__logs ORDER BY subject",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(logs[1], ("ghost".to_owned(), "HTTP 404".to_owned()));
    let (subject, message) = &logs[0];
    assert_eq!(subject, "broken");
    for part in [
        "\"broken\"",
        "\"avengers\"",
        "Profile",
        "invalid type: integer `42`",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part}");
    }
}

#[fetchq::handler(queue = "beats", cron = "* * * * * *", tz = "Europe/Stockholm")]
async fn heartbeat(doc: fetchq::Doc<serde_json::Value>) -> fetchq::Outcome {
    let _ = doc;
    fetchq::Outcome::complete()
}

#[tokio::test]
async fn a_cron_handler_registers_its_schedule_and_runs_on_it() {
    let db = TestDb::new().await;
    let c = &db.client;
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(Some(Duration::from_millis(100)))
        .register(heartbeat);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    let start = Instant::now();
    while stats.total().completed < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "stats: {:?}",
            stats.total()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
    run.await.unwrap().unwrap();
    let list = c.schedule_list().await.unwrap();
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert_eq!(
        (
            s.name.as_str(),
            s.subject.as_str(),
            s.time_zone.as_str(),
            s.queue.as_str()
        ),
        ("beats.heartbeat", "heartbeat", "Europe/Stockholm", "beats")
    );
    assert!(s.ticks >= 2);
    // one document, run once per tick that was not skipped
    let doc = c.get("beats", "heartbeat").await.unwrap();
    assert!(
        doc.iterations >= 2 && doc.iterations <= s.ticks,
        "{doc:?} {s:?}"
    );
}
