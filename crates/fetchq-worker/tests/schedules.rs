//! Cron schedules through the runtime: three runtimes (separate pools, as
//! three processes) on an every-second schedule fire each tick once, ticks
//! missed while no runtime ran collapse into one, a broken schedule does not
//! wedge the leader, invalid schedules are configuration errors.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fetchq_core::{Client, CronSchedule};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime, WorkerError};
use serde_json::{Value, json};

use common::{LogCapture, eventually, handler};

/// A runtime on its own pool, maintenance every 100 ms.
async fn runtime(db: &TestDb) -> Runtime {
    Runtime::new(db.pool_on(&db.name, 6).await)
        .handle_signals(false)
        .maintenance(Some(Duration::from_millis(100)))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Every tick fired, as a trigger saw `fetchq.schedules.ticks` grow.
async fn install_tick_log(c: &Client) {
    sqlx::raw_sql(
        "CREATE TABLE tick_log (name text, tick timestamptz, at timestamptz DEFAULT clock_timestamp());
         CREATE FUNCTION log_tick() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO tick_log (name, tick) VALUES (NEW.name, NEW.last_tick_at);
             RETURN NEW;
         END $$;
         CREATE TRIGGER log_tick AFTER UPDATE ON fetchq.schedules FOR EACH ROW
             WHEN (OLD.ticks IS DISTINCT FROM NEW.ticks) EXECUTE FUNCTION log_tick();",
    )
    .execute(c.pool())
    .await
    .unwrap();
}

async fn schedule_row(c: &Client, name: &str) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT ticks, ticks_collapsed, ticks_skipped FROM fetchq.schedules WHERE name = $1",
    )
    .bind(name)
    .fetch_one(c.pool())
    .await
    .unwrap()
}

/// A handler of `cron` that counts its runs, on an every-second schedule.
fn ticking(runs: Arc<AtomicUsize>) -> impl fetchq_worker::Handler<Payload = Value> {
    handler(
        HandlerOptions::new("cron")
            .named("beat")
            .cron("* * * * * *")
            .idle_poll(Duration::from_millis(200)),
        move |_doc, _ctx| {
            let runs = runs.clone();
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::complete())
            })
        },
    )
}

#[tokio::test]
async fn three_runtimes_fire_each_tick_once_and_missed_ticks_collapse() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.migrate().await.unwrap();
    c.queue_create("cron").await.unwrap();
    install_tick_log(&c).await;
    // a schedule broken by hand: the leader records it and goes on
    sqlx::raw_sql(
        "INSERT INTO fetchq.schedules (name, cron, time_zone, queue, subject)
         VALUES ('broken', '77 * * * *', 'UTC', 'cron', 'x')",
    )
    .execute(c.pool())
    .await
    .unwrap();

    let runs = Arc::new(AtomicUsize::new(0));
    let mut stops = vec![];
    let mut tasks = vec![];
    for _ in 0..3 {
        let rt = runtime(&db).await.register(ticking(runs.clone()));
        stops.push(rt.shutdown_token());
        tasks.push(tokio::spawn(rt.run()));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for s in &stops {
        s.cancel();
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    let name = "cron.beat";
    let (ticks, _collapsed, skipped) = schedule_row(&c, name).await;
    assert!(
        ticks >= 3,
        "an every-second schedule fired {ticks} times in 5 s"
    );
    // each tick fired once: one log row per tick, no tick twice
    let (logged, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT tick) FROM tick_log WHERE name = $1")
            .bind(name)
            .fetch_one(c.pool())
            .await
            .unwrap();
    assert_eq!((logged, distinct), (ticks, ticks));
    // each tick not skipped gave exactly one run of the document
    let runs = runs.load(Ordering::SeqCst) as i64;
    assert_eq!(runs, ticks - skipped, "ticks {ticks}, skipped {skipped}");
    let iterations: i64 =
        sqlx::query_scalar("SELECT iterations FROM fetchq_data.cron__docs WHERE subject = 'beat'")
            .fetch_one(c.pool())
            .await
            .unwrap();
    assert_eq!(iterations, runs);
    let broken = c.schedule_list().await.unwrap();
    let broken = broken.iter().find(|s| s.name == "broken").unwrap();
    assert!(broken.last_error.as_deref().unwrap().contains("77 * * * *"));
    assert_eq!(broken.ticks, 0);

    // nobody runs for 3.5 s: the missed ticks fire once when a runtime is back
    let (before, collapsed_before, _) = schedule_row(&c, name).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let runs2 = Arc::new(AtomicUsize::new(0));
    let rt = runtime(&db).await.register(ticking(runs2.clone()));
    let stop = rt.shutdown_token();
    let task = tokio::spawn(rt.run());
    let c2 = c.clone();
    eventually(
        Duration::from_secs(10),
        "the first tick after the gap",
        || {
            let c = c2.clone();
            async move { schedule_row(&c, "cron.beat").await.0 > before }
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let (after, collapsed_after, _) = schedule_row(&c, name).await;
    // still one log row per tick, none twice, across the restart
    let (logged, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT tick) FROM tick_log WHERE name = $1")
            .bind(name)
            .fetch_one(c.pool())
            .await
            .unwrap();
    assert_eq!((logged, distinct), (after, after));
    assert!(after > before);
    assert!(
        collapsed_after - collapsed_before >= 2,
        "3.5 s missed on an every-second schedule: {} collapsed",
        collapsed_after - collapsed_before
    );
}

#[tokio::test]
async fn runtime_schedule_sets_the_schedule_and_fires_its_payload() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let s2 = seen.clone();
    let h = handler(HandlerOptions::new("reports"), move |doc, _ctx| {
        let seen = s2.clone();
        Box::pin(async move {
            seen.lock().unwrap().push((doc.subject, doc.payload));
            Ok(Outcome::complete())
        })
    });
    let rt = runtime(&db)
        .await
        .schedule(
            CronSchedule::new("every-second", "* * * * * *")
                .queue("reports")
                .subject("report")
                .payload(json!({"kind": "full"})),
        )
        .schedule(
            CronSchedule::new("nightly", "30 2 * * *")
                .tz("Europe/Stockholm")
                .queue("reports"),
        )
        .register(h);
    let stop = rt.shutdown_token();
    let task = tokio::spawn(rt.run());
    let s3 = seen.clone();
    eventually(Duration::from_secs(10), "a scheduled run", || {
        let seen = s3.clone();
        async move { !seen.lock().unwrap().is_empty() }
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first, ("report".to_owned(), json!({"kind": "full"})));
    let list = c.schedule_list().await.unwrap();
    let nightly = list.iter().find(|s| s.name == "nightly").unwrap();
    // planned by the leader, at 02:30 in Stockholm
    let local: String = sqlx::query_scalar(
        "SELECT to_char(next_tick_at AT TIME ZONE 'Europe/Stockholm', 'HH24:MI') FROM fetchq.schedules WHERE name = 'nightly'",
    )
    .fetch_one(c.pool())
    .await
    .unwrap();
    assert!(nightly.next_tick_at.is_some());
    assert_eq!(local, "02:30");
}

#[tokio::test]
async fn invalid_schedules_are_configuration_errors() {
    let db = TestDb::new().await;
    let noop = || {
        handler(HandlerOptions::new("q"), |_d, _c| {
            Box::pin(async { Ok(Outcome::complete()) })
        })
    };
    let cases: Vec<(Runtime, &str)> = vec![
        (
            runtime(&db)
                .await
                .schedule(CronSchedule::new("a", "61 * * * *").queue("q"))
                .register(noop()),
            "61 * * * *",
        ),
        (
            runtime(&db)
                .await
                .schedule(
                    CronSchedule::new("a", "@daily")
                        .tz("Europe/Atlantis")
                        .queue("q"),
                )
                .register(noop()),
            "Europe/Atlantis",
        ),
        (
            runtime(&db)
                .await
                .schedule(CronSchedule::new("a", "@daily"))
                .register(noop()),
            "queue",
        ),
        (
            runtime(&db).await.register(handler(
                HandlerOptions::new("q").cron("* * * *"),
                |_d, _c| Box::pin(async { Ok(Outcome::complete()) }),
            )),
            "5 fields",
        ),
        (
            runtime(&db)
                .await
                .register(handler(HandlerOptions::new("q").tz("UTC"), |_d, _c| {
                    Box::pin(async { Ok(Outcome::complete()) })
                })),
            "without cron",
        ),
    ];
    for (rt, needle) in cases {
        match rt.run().await {
            Err(WorkerError::Config(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
            other => panic!("expected a config error with {needle:?}, got {other:?}"),
        }
    }
    // nothing was stored
    db.client.migrate().await.unwrap();
    assert!(db.client.schedule_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_schedule_of_a_missing_queue_fails_the_start_without_create_queues() {
    let db = TestDb::new().await;
    let rt = runtime(&db)
        .await
        .create_queues(false)
        .schedule(CronSchedule::new("a", "@daily").queue("ghost"))
        .register(handler(HandlerOptions::new("ghost"), |_d, _c| {
            Box::pin(async { Ok(Outcome::complete()) })
        }));
    match rt.run().await {
        Err(WorkerError::Database(fetchq_core::Error::QueueNotFound { .. })) => {}
        other => panic!("expected QueueNotFound, got {other:?}"),
    }
}

// current_thread: the leader runs on this thread, where the capturing
// subscriber is the default
#[tokio::test(flavor = "current_thread")]
async fn a_leader_on_a_schema_older_than_18_warns_once_not_every_round() {
    use tracing_subscriber::layer::SubscriberExt;
    let capture = LogCapture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    // what the leader sees on a schema 17 database: no schedules
    sqlx::raw_sql(
        "DROP FUNCTION fetchq.schedule_due(integer); DROP TABLE fetchq.schedules CASCADE;",
    )
    .execute(db.client.pool())
    .await
    .unwrap();
    let rt = runtime(&db).await.migrate(false).register(handler(
        HandlerOptions::new("q").idle_poll(Duration::from_millis(200)),
        |_d, _c| Box::pin(async { Ok(Outcome::complete()) }),
    ));
    let stop = rt.shutdown_token();
    let task = tokio::spawn(rt.run());
    // 100 ms maintenance: about 15 rounds
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        capture.count(tracing::Level::WARN, "database trouble"),
        0,
        "a schema without schedules is not database trouble"
    );
    assert_eq!(
        capture.count(tracing::Level::WARN, "older than 18"),
        1,
        "said once"
    );
    // the maintenance jobs still ran
    assert!(capture.count(tracing::Level::INFO, "now runs fetchq maintenance") == 1);
}

/// With a long maintenance interval (3 s) an every-second schedule still
/// fires every second, each tick within a few hundred milliseconds of its
/// time: the leader sleeps until the next planned tick, not a whole interval
/// (which collapsed three ticks into one and fired them up to 3 s late).
#[tokio::test]
async fn ticks_fire_on_time_with_a_long_maintenance_interval() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    install_tick_log(&c).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::new(db.pool_on(&db.name, 6).await)
        .handle_signals(false)
        .maintenance(Some(Duration::from_secs(3)))
        .shutdown_timeout(Duration::from_secs(5))
        .register(ticking(runs.clone()));
    let stop = rt.shutdown_token();
    let task = tokio::spawn(rt.run());
    // the first round plans the first tick; then 7 s of ticks
    eventually(Duration::from_secs(10), "the first tick planned", || async {
        sqlx::query_scalar::<_, Option<fetchq_core::chrono::DateTime<fetchq_core::chrono::Utc>>>(
            "SELECT next_tick_at FROM fetchq.schedules WHERE name = 'cron.beat'",
        )
        .fetch_optional(c.pool())
        .await
        .unwrap()
        .flatten()
        .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let (ticks, collapsed, worst_ms): (i64, i64, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tick_log), (SELECT ticks_collapsed FROM fetchq.schedules),
                (SELECT coalesce(max(extract(epoch FROM at - tick) * 1000), 0)::float8 FROM tick_log)",
    )
    .fetch_one(c.pool())
    .await
    .unwrap();
    eprintln!("{ticks} ticks, {collapsed} collapsed, the latest {worst_ms:.0} ms after its time");
    assert!(
        ticks >= 6,
        "{ticks} ticks in 7 s of an every-second schedule"
    );
    assert!(collapsed <= 1, "{collapsed} ticks collapsed");
    assert!(worst_ms < 500.0, "a tick fired {worst_ms} ms late");
}

/// A runtime with schedules on a database older than schema 18 (and not
/// migrating it) refuses to start with a configuration error that says so,
/// not a raw "function fetchq.schedule_set does not exist".
#[tokio::test]
async fn schedules_on_a_schema_older_than_18_fail_the_start_clearly() {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    sqlx::raw_sql(
        "DROP FUNCTION fetchq.schedule_set(text, text, text, text, text, jsonb, integer, integer);
         DELETE FROM fetchq.migrations WHERE version >= 18;",
    )
    .execute(db.client.pool())
    .await
    .unwrap();
    let rt = runtime(&db)
        .await
        .migrate(false)
        .schedule(CronSchedule::new("a", "@daily").queue("q"))
        .register(handler(HandlerOptions::new("q"), |_d, _c| {
            Box::pin(async { Ok(Outcome::complete()) })
        }));
    match rt.run().await {
        Err(WorkerError::Config(m)) => {
            assert!(m.contains("schema 18") && m.contains("schema 17"), "{m}")
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
