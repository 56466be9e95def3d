//! Schema 16: schedules (cron). The SQL checks, the leader's round (plan,
//! fire, collapse), exactly one document iteration per tick under concurrent
//! rounds, a broken schedule not wedging the others, dropped queues.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq_core::chrono::{DateTime, Utc};
use fetchq_core::{Client, CronSchedule, CronSpec, Error, PickOptions};
use fetchq_testing::TestDb;

/// Moves a schedule's planned tick `secs` seconds into the past.
async fn make_due(c: &Client, name: &str, secs: i64) {
    sqlx::query("UPDATE fetchq.schedules SET next_tick_at = now() - make_interval(secs => $2) WHERE name = $1")
        .bind(name)
        .bind(secs as f64)
        .execute(c.pool())
        .await
        .unwrap();
}

async fn iterations(c: &Client, queue: &str, subject: &str) -> (i64, i32) {
    sqlx::query_as(&format!(
        "SELECT iterations, status FROM fetchq_data.{queue}__docs WHERE subject = $1"
    ))
    .bind(subject)
    .fetch_one(c.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn set_list_drop_and_typed_errors() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let s = CronSchedule::new("nightly", "0 3 * * *")
        .tz("Europe/Stockholm")
        .queue("q")
        .payload(serde_json::json!({"k": 1}))
        .priority(4);
    let set = c.schedule_set(&s).await.unwrap();
    assert!(set.created && set.replanned);
    let list = c.schedule_list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subject, "nightly");
    assert_eq!(list[0].time_zone, "Europe/Stockholm");
    assert_eq!(list[0].payload["k"], 1);
    assert_eq!(list[0].next_tick_at, None);

    // planned by a round, then a payload change keeps the plan
    let round = c.schedule_tick(100).await.unwrap();
    assert_eq!(round.planned, 1);
    let planned = c.schedule_list().await.unwrap()[0].next_tick_at.unwrap();
    let set = c
        .schedule_set(&s.clone().payload(serde_json::json!({"k": 2})))
        .await
        .unwrap();
    assert!(!set.created && !set.replanned);
    let after = &c.schedule_list().await.unwrap()[0];
    assert_eq!(after.next_tick_at, Some(planned));
    assert_eq!(after.payload["k"], 2);
    // the database's time zone data agrees with chrono-tz: 03:00 in Stockholm
    let local: String = sqlx::query_scalar(
        "SELECT to_char(next_tick_at AT TIME ZONE 'Europe/Stockholm', 'HH24:MI:SS') FROM fetchq.schedules",
    )
    .fetch_one(c.pool())
    .await
    .unwrap();
    assert_eq!(local, "03:00:00");
    // a new expression replans
    let set = c.schedule_set(&s.clone().tz("UTC")).await.unwrap();
    assert!(set.replanned);
    assert_eq!(c.schedule_list().await.unwrap()[0].next_tick_at, None);

    // typed errors from the client's checks
    let bad = c
        .schedule_set(&CronSchedule::new("x", "61 * * * *").queue("q"))
        .await;
    assert!(matches!(bad, Err(Error::InvalidCron { .. })), "{bad:?}");
    let bad = c
        .schedule_set(
            &CronSchedule::new("x", "* * * * *")
                .tz("Europe/Nowhere")
                .queue("q"),
        )
        .await;
    assert!(matches!(bad, Err(Error::UnknownTimeZone { .. })), "{bad:?}");
    let bad = c
        .schedule_set(&CronSchedule::new("x", "* * * * *").queue("nope"))
        .await;
    assert!(matches!(bad, Err(Error::QueueNotFound { .. })), "{bad:?}");
    let bad = c
        .schedule_set(&CronSchedule::new("a/b", "* * * * *").queue("q"))
        .await;
    assert!(matches!(bad, Err(Error::InvalidArgument { .. })), "{bad:?}");
    let bad = c
        .schedule_set(&CronSchedule::new("x", "* * * * *").queue("q").subject(""))
        .await;
    assert!(matches!(bad, Err(Error::InvalidSubject { .. })), "{bad:?}");

    // the SQL function checks what it can for psql callers
    for (sql, needle) in [
        (
            "SELECT fetchq.schedule_set('x', '* * * *', 'UTC', 'q', 's')",
            "5 fields",
        ),
        (
            "SELECT fetchq.schedule_set('x', '* * * * *', 'Mars/Base', 'q', 's')",
            "unknown time zone",
        ),
        (
            "SELECT fetchq.schedule_set('x', '* * * * *', 'UTC', 'nope', 's')",
            "nope",
        ),
        (
            "SELECT fetchq.schedule_set('x', '@fortnightly', 'UTC', 'q', 's')",
            "nickname",
        ),
        (
            "SELECT fetchq.schedule_set('', '* * * * *', 'UTC', 'q', 's')",
            "schedule name",
        ),
        (
            "SELECT fetchq.schedule_set('x', '* * * * *', 'UTC', 'q', '')",
            "subject",
        ),
    ] {
        let err = sqlx::query(sql).execute(c.pool()).await.unwrap_err();
        let err = Error::from(err);
        assert!(err.sqlstate().is_some(), "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }

    assert!(c.schedule_drop("nightly").await.unwrap());
    assert!(!c.schedule_drop("nightly").await.unwrap());
    assert!(c.schedule_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn ticks_push_play_skip_and_collapse() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.schedule_set(
        &CronSchedule::new("every-minute", "* * * * *")
            .queue("q")
            .subject("job"),
    )
    .await
    .unwrap();
    assert_eq!(c.schedule_tick(10).await.unwrap().planned, 1);
    // not due yet: nothing happens
    assert_eq!(c.schedule_tick(10).await.unwrap(), Default::default());

    // missed for ten minutes: one document, the missed ticks collapsed
    make_due(c, "every-minute", 600).await;
    let round = c.schedule_tick(10).await.unwrap();
    assert_eq!((round.pushed, round.fired()), (1, 1));
    assert!((9..=11).contains(&round.collapsed), "{round:?}");
    let s = &c.schedule_list().await.unwrap()[0];
    assert_eq!(s.ticks, 1);
    assert_eq!(s.ticks_collapsed as u64, round.collapsed);
    assert!(s.next_tick_at.unwrap() > Utc::now() - chrono_secs(1));
    assert_eq!(iterations(c, "q", "job").await, (0, 1));

    // due again while pending: it stays one pending document
    make_due(c, "every-minute", 1).await;
    let round = c.schedule_tick(10).await.unwrap();
    assert_eq!((round.played, round.collapsed), (1, 0));
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.q__docs")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(docs, 1);

    // active: the tick is skipped, the run not disturbed
    let picked = c.pick("q", &PickOptions::new()).await.unwrap();
    assert_eq!(picked.len(), 1);
    make_due(c, "every-minute", 1).await;
    assert_eq!(c.schedule_tick(10).await.unwrap().skipped, 1);
    assert_eq!(iterations(c, "q", "job").await.1, 2);
    c.complete(&picked[0].lease, None).await.unwrap();
    assert_eq!(iterations(c, "q", "job").await, (1, 3));

    // completed: the next tick runs it again
    make_due(c, "every-minute", 1).await;
    assert_eq!(c.schedule_tick(10).await.unwrap().played, 1);
    assert_eq!(iterations(c, "q", "job").await, (1, 1));
    let s = &c.schedule_list().await.unwrap()[0];
    assert_eq!((s.ticks, s.ticks_skipped), (4, 1));
    // the counters followed the status changes
    let real = c.metric_compute("q").await.unwrap();
    let counted = c.metric_get_common("q").await.unwrap();
    assert_eq!(
        (counted.pending, counted.active, counted.completed),
        (real.pending, real.active, real.completed)
    );
}

fn chrono_secs(n: i64) -> fetchq_core::chrono::Duration {
    fetchq_core::chrono::Duration::seconds(n)
}

#[tokio::test]
async fn concurrent_rounds_fire_each_tick_once() {
    let db = TestDb::with_pool_size(4).await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    for i in 0..40 {
        c.schedule_set(&CronSchedule::new(format!("s{i}"), "* * * * *").queue("q"))
            .await
            .unwrap();
    }
    c.schedule_tick(100).await.unwrap();
    for round in 0..3 {
        sqlx::query("UPDATE fetchq.schedules SET next_tick_at = now() - interval '1 second'")
            .execute(c.pool())
            .await
            .unwrap();
        // six rounds at once, each on its own pool (as six processes)
        let mut tasks = vec![];
        for _ in 0..6 {
            let pool = db.pool_on(&db.name, 2).await;
            tasks.push(tokio::spawn(async move {
                let c = Client::new(pool);
                c.schedule_tick(100).await.unwrap()
            }));
        }
        let mut fired = 0;
        for t in tasks {
            fired += t.await.unwrap().fired();
        }
        assert_eq!(
            fired, 40,
            "round {round}: every due tick fired exactly once"
        );
        let ticks: Vec<i64> = sqlx::query_scalar("SELECT ticks FROM fetchq.schedules")
            .fetch_all(c.pool())
            .await
            .unwrap();
        assert!(ticks.iter().all(|&t| t == round + 1), "{ticks:?}");
    }
}

#[tokio::test]
async fn a_broken_schedule_does_not_wedge_the_others() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.schedule_set(&CronSchedule::new("good", "* * * * *").queue("q"))
        .await
        .unwrap();
    // stored by hand past every check: bad expression, bad zone, missing queue
    sqlx::raw_sql(
        "INSERT INTO fetchq.schedules (name, cron, time_zone, queue, subject, next_tick_at) VALUES
           ('bad-cron', '99 * * * *', 'UTC', 'q', 'x', NULL),
           ('bad-zone', '* * * * *', 'Nowhere/Land', 'q', 'y', NULL),
           ('no-queue', '* * * * *', 'UTC', 'ghost', 'z', now() - interval '1 minute')",
    )
    .execute(c.pool())
    .await
    .unwrap();
    let round = c.schedule_tick(100).await.unwrap();
    assert_eq!((round.planned, round.errors), (1, 3), "{round:?}");
    make_due(c, "good", 1).await;
    let round = c.schedule_tick(100).await.unwrap();
    assert_eq!((round.pushed, round.errors), (1, 3), "{round:?}");
    let list = c.schedule_list().await.unwrap();
    let err = |n: &str| {
        list.iter()
            .find(|s| s.name == n)
            .unwrap()
            .last_error
            .clone()
    };
    assert!(
        err("bad-cron").unwrap().contains("99 * * * *"),
        "{:?}",
        err("bad-cron")
    );
    assert!(err("bad-zone").unwrap().contains("Nowhere/Land"));
    assert!(err("no-queue").unwrap().contains("ghost"));
    assert_eq!(err("good"), None);
    // the failed tick stays due: fixed by hand, it fires
    c.queue_create("ghost").await.unwrap();
    let round = c.schedule_tick(100).await.unwrap();
    assert_eq!(round.pushed, 1, "{round:?}");
    let list = c.schedule_list().await.unwrap();
    let fixed = list.iter().find(|s| s.name == "no-queue").unwrap();
    assert_eq!((fixed.ticks, fixed.last_error.as_deref()), (1, None));
}

#[tokio::test]
async fn dropping_a_queue_drops_its_schedules() {
    let db = TestDb::new().await;
    let c = &db.client;
    for q in ["a", "b"] {
        c.queue_create(q).await.unwrap();
        c.schedule_set(&CronSchedule::new(format!("s-{q}"), "@hourly").queue(q))
            .await
            .unwrap();
    }
    c.queue_drop("a").await.unwrap();
    let names: Vec<String> = c
        .schedule_list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["s-b"]);
    // recreated, the queue has no schedule until one is set again
    c.queue_create("a").await.unwrap();
    assert_eq!(c.schedule_list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_tick_planned_across_a_dst_change_is_the_pure_functions() {
    // the database plans with the same function the unit tests pin down:
    // the stored next tick is CronSpec::next_after(the database's now)
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.schedule_set(
        &CronSchedule::new("dst", "30 2 * * *")
            .tz("Europe/Stockholm")
            .queue("q"),
    )
    .await
    .unwrap();
    let before: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(c.pool())
        .await
        .unwrap();
    c.schedule_tick(10).await.unwrap();
    let next = c.schedule_list().await.unwrap()[0].next_tick_at.unwrap();
    let spec = CronSpec::parse("30 2 * * *", "Europe/Stockholm").unwrap();
    assert_eq!(next, spec.next_after(before).unwrap());
    // fired at a tick on the spring-forward day, it plans the next after now,
    // whatever the stored tick was (a fixed clock: the fire function takes
    // the ticks from the caller)
    let gap: DateTime<Utc> = "2026-03-29T01:00:00Z".parse().unwrap();
    sqlx::query("UPDATE fetchq.schedules SET next_tick_at = $1")
        .bind(gap)
        .execute(c.pool())
        .await
        .unwrap();
    let outcome: String = sqlx::query_scalar("SELECT fetchq.schedule_fire('dst', 1, $1, $2, 0)")
        .bind(gap)
        .bind(spec.next_after(gap).unwrap())
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(outcome, "pushed");
    let s = &c.schedule_list().await.unwrap()[0];
    assert_eq!(s.last_tick_at, Some(gap));
    assert_eq!(
        s.next_tick_at,
        Some("2026-03-30T00:30:00Z".parse().unwrap())
    );
    // the same tick again is refused: fired once
    let again: String = sqlx::query_scalar("SELECT fetchq.schedule_fire('dst', 1, $1, $2, 0)")
        .bind(gap)
        .bind(spec.next_after(gap).unwrap())
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(again, "lost");
}

#[tokio::test]
async fn long_open_transactions_do_not_block_the_round() {
    let db = TestDb::with_pool_size(4).await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    for n in ["held-schedule", "held-doc", "free"] {
        c.schedule_set(&CronSchedule::new(n, "* * * * *").queue("q"))
            .await
            .unwrap();
    }
    c.schedule_tick(10).await.unwrap();
    // the document of held-doc exists (a first tick)
    make_due(c, "held-doc", 1).await;
    assert_eq!(c.schedule_tick(10).await.unwrap().pushed, 1);
    for n in ["held-schedule", "held-doc", "free"] {
        make_due(c, n, 1).await;
    }
    // another session holds the schedule's row, a third the document's row
    let other = db.pool_on(&db.name, 2).await;
    let mut tx1 = other.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq.schedules WHERE name = 'held-schedule' FOR UPDATE")
        .execute(&mut *tx1)
        .await
        .unwrap();
    let mut tx2 = other.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq_data.q__docs WHERE subject = 'held-doc' FOR UPDATE")
        .execute(&mut *tx2)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let round = tokio::time::timeout(std::time::Duration::from_secs(20), c.schedule_tick(10))
        .await
        .expect("the round must not wait for the transactions")
        .unwrap();
    // the free one fired, the two held ones wait for the next round
    assert_eq!(
        (round.pushed, round.busy, round.errors),
        (1, 2, 0),
        "{round:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    tx1.rollback().await.unwrap();
    tx2.rollback().await.unwrap();
    let round = c.schedule_tick(10).await.unwrap();
    assert_eq!(
        (round.pushed + round.played, round.busy),
        (2, 0),
        "{round:?}"
    );
    let list = c.schedule_list().await.unwrap();
    assert!(list.iter().all(|s| s.last_error.is_none()), "{list:?}");
    // the session's own lock_timeout is left as it was
    let lt: String = sqlx::query_scalar("SELECT current_setting('lock_timeout')")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(lt, "0");
}

#[tokio::test]
async fn broken_schedules_do_not_crowd_out_the_others() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO fetchq.schedules (name, cron, time_zone, queue, subject)
         SELECT 'bad' || i, 'nope', 'UTC', 'q', 'x' || i FROM generate_series(1, 30) AS i",
    )
    .execute(c.pool())
    .await
    .unwrap();
    // first round: all broken (the limit is 10), errors recorded
    assert_eq!(c.schedule_tick(10).await.unwrap().errors, 10);
    c.schedule_tick(10).await.unwrap();
    c.schedule_tick(10).await.unwrap();
    c.schedule_set(&CronSchedule::new("good", "* * * * *").queue("q"))
        .await
        .unwrap();
    // the good one is planned though 30 broken ones come first by time
    let round = c.schedule_tick(10).await.unwrap();
    assert_eq!(round.planned, 1, "{round:?}");
}

#[tokio::test]
async fn fall_back_fires_the_repeated_hour_once_through_the_database() {
    // Stockholm 2026-10-25: 02:30 happens at 00:30 and 01:30 UTC. Fired at
    // the first, the stored plan is the next day's 02:30 (01:30 UTC), never
    // the second pass; the same tick fired twice is refused.
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.schedule_set(
        &CronSchedule::new("dst", "30 2 * * *")
            .tz("Europe/Stockholm")
            .queue("q"),
    )
    .await
    .unwrap();
    let spec = CronSpec::parse("30 2 * * *", "Europe/Stockholm").unwrap();
    let first: DateTime<Utc> = "2026-10-25T00:30:00Z".parse().unwrap();
    let second: DateTime<Utc> = "2026-10-25T01:30:00Z".parse().unwrap();
    let next = spec.next_after(first).unwrap();
    assert_eq!(
        next,
        "2026-10-26T01:30:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(spec.next_after(second - chrono_secs(1)).unwrap(), next);
    sqlx::query("UPDATE fetchq.schedules SET next_tick_at = $1")
        .bind(first)
        .execute(c.pool())
        .await
        .unwrap();
    for expected in ["pushed", "lost"] {
        let outcome: String =
            sqlx::query_scalar("SELECT fetchq.schedule_fire('dst', 1, $1, $2, 0)")
                .bind(first)
                .bind(next)
                .fetch_one(c.pool())
                .await
                .unwrap();
        assert_eq!(outcome, expected);
    }
    let s = &c.schedule_list().await.unwrap()[0];
    assert_eq!(
        (s.ticks, s.last_tick_at, s.next_tick_at),
        (1, Some(first), Some(next))
    );
    // and the database's zone data agrees: the plan is 02:30 local (CET)
    let local: String = sqlx::query_scalar(
        "SELECT to_char(next_tick_at AT TIME ZONE 'Europe/Stockholm', 'YYYY-MM-DD HH24:MI') FROM fetchq.schedules",
    )
    .fetch_one(c.pool())
    .await
    .unwrap();
    assert_eq!(local, "2026-10-26 02:30");
}

/// A tick that makes an existing document due again checks the schedule's
/// payload against the queue's max_payload_size (doc_push checks it before it
/// finds the document exists): a limit lowered after schedule_set fails the
/// tick with FQ005 in last_error, the tick stays due, nothing is stored.
#[tokio::test]
async fn a_tick_replacing_a_payload_checks_the_queues_max_payload_size() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let s = CronSchedule::new("big", "* * * * *")
        .queue("q")
        .subject("job")
        .payload(serde_json::json!({"k": 1}));
    c.schedule_set(&s).await.unwrap();
    c.schedule_tick(10).await.unwrap();
    make_due(c, "big", 1).await;
    assert_eq!(c.schedule_tick(10).await.unwrap().pushed, 1);
    // a larger payload, allowed when set; then the queue's limit is lowered
    let big = serde_json::json!({"k": "x".repeat(2000)});
    c.schedule_set(&s.clone().payload(big)).await.unwrap();
    c.queue_set_max_payload_size("q", 500).await.unwrap();
    make_due(c, "big", 1).await;
    let round = c.schedule_tick(10).await.unwrap();
    assert_eq!((round.played, round.errors), (0, 1), "{round:?}");
    let stored: i32 = sqlx::query_scalar(
        "SELECT pg_column_size(payload) FROM fetchq_data.q__docs WHERE subject = 'job'",
    )
    .fetch_one(c.pool())
    .await
    .unwrap();
    assert!(
        stored <= 500,
        "a {stored}-byte payload stored in a 500-byte queue"
    );
    let info = &c.schedule_list().await.unwrap()[0];
    let err = info.last_error.as_deref().unwrap_or_default();
    assert!(err.contains("exceeds"), "{err:?}");
    // the tick stays due: nothing lost, it fires once the limit allows it
    assert_eq!(info.ticks, 1);
    c.queue_set_max_payload_size("q", 64 * 1024).await.unwrap();
    assert_eq!(c.schedule_tick(10).await.unwrap().played, 1);
}

/// Hostile input: a 10k-character cron, time zone or name is refused with a
/// typed error whose message stays short, and nothing is stored; a NULL
/// argument from SQL is FQ004 or FQ003, not a stored NULL.
#[tokio::test]
async fn hostile_input_is_refused_with_short_typed_errors() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    // 5 fields, a 10k-character minute list croner would parse
    let huge_cron = format!("{} * * * *", vec!["1"; 5000].join(","));
    let e = c
        .schedule_set(&CronSchedule::new("a", huge_cron).queue("q"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidCron { .. }), "{e:?}");
    assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
    assert!(e.to_string().contains("200"), "{e}");
    let e = c
        .schedule_set(
            &CronSchedule::new("a", "@daily")
                .tz("X".repeat(10_000))
                .queue("q"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownTimeZone { .. }), "{e:?}");
    assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
    let e = c
        .schedule_set(&CronSchedule::new("n".repeat(10_000), "@daily").queue("q"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
    for args in [
        "NULL, '@daily', 'UTC', 'q', 's'",
        "'a', NULL, 'UTC', 'q', 's'",
        "'a', '@daily', NULL, 'q', 's'",
        "'a', '@daily', 'UTC', NULL, 's'",
        "'a', '@daily', 'UTC', 'q', NULL",
        "'a', '@daily', 'UTC', 'q', 's', '{}', NULL",
        "'a', '@daily', 'UTC', 'q', 's', '{}', 0, NULL",
    ] {
        let e = sqlx::query(&format!("SELECT fetchq.schedule_set({args})"))
            .execute(c.pool())
            .await
            .unwrap_err();
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .unwrap_or_default()
            .to_string();
        assert!(
            matches!(code.as_str(), "FQ001" | "FQ003" | "FQ004"),
            "{args}: {e}"
        );
    }
    assert!(c.schedule_list().await.unwrap().is_empty());
}

/// Two leaders after a partition: both read the same due tick, the stale one
/// fires late (after the other fired it and even after the next tick came
/// due). The claim is conditional on the planned tick, not on leadership: the
/// stale call is 'lost' and the document got one iteration per tick.
#[tokio::test]
async fn a_stale_leader_never_fires_a_tick_twice() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.schedule_set(
        &CronSchedule::new("m", "* * * * *")
            .queue("q")
            .subject("job"),
    )
    .await
    .unwrap();
    c.schedule_tick(10).await.unwrap();
    make_due(c, "m", 1).await;
    let (revision, expected): (i64, DateTime<Utc>) =
        sqlx::query_as("SELECT revision, next_tick_at FROM fetchq.schedules WHERE name = 'm'")
            .fetch_one(c.pool())
            .await
            .unwrap();
    let fire = |next: DateTime<Utc>| {
        sqlx::query_scalar::<_, String>("SELECT outcome FROM fetchq.schedule_fire('m', $1, $2, $3)")
            .bind(revision)
            .bind(expected)
            .bind(next)
            .fetch_one(c.pool())
    };
    // leader B fires the tick
    assert_eq!(fire(Utc::now() + chrono_secs(60)).await.unwrap(), "pushed");
    // the next tick comes due, B's next round fires it too
    make_due(c, "m", 1).await;
    assert_eq!(c.schedule_tick(10).await.unwrap().played, 1);
    // stale leader A, back from the partition, fires what it read
    assert_eq!(fire(Utc::now() + chrono_secs(30)).await.unwrap(), "lost");
    let s = &c.schedule_list().await.unwrap()[0];
    assert_eq!(s.ticks, 2);
    assert_eq!(iterations(c, "q", "job").await, (0, 1));
}

/// A paused queue: ticks still fire into it, but they keep one pending
/// document (no backlog of one per tick to run at resume).
#[tokio::test]
async fn ticks_into_a_paused_queue_keep_one_document() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.schedule_set(
        &CronSchedule::new("p", "* * * * * *")
            .queue("q")
            .subject("job"),
    )
    .await
    .unwrap();
    c.schedule_tick(10).await.unwrap();
    c.queue_pause("q").await.unwrap();
    for _ in 0..3 {
        make_due(c, "p", 1).await;
        assert_eq!(c.schedule_tick(10).await.unwrap().fired(), 1);
    }
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.q__docs")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(docs, 1);
    assert!(c.pick("q", &PickOptions::new()).await.unwrap().is_empty());
    c.queue_resume("q").await.unwrap();
    assert_eq!(c.pick("q", &PickOptions::new()).await.unwrap().len(), 1);
}
