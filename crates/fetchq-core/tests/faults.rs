//! Regression tests for faults found in review: deadlocking batch pushes,
//! muted wake-ups, racing counter repairs, overflowing backoff, idle next-due,
//! and bad input on every resolution path.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{Error, Lease, NewDoc, PickOptions, Schedule, Status};
use fetchq_testing::TestDb;
use serde_json::json;
use sqlx::postgres::PgListener;

/// A small deterministic shuffle (no rand dependency): Fisher-Yates with an LCG.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from((state >> 33) % (i as u64 + 1)).unwrap();
        items.swap(i, j);
    }
}

// ---------------------------------------------------------------- push_many

#[tokio::test]
async fn concurrent_overlapping_push_many_never_deadlocks() {
    let db = TestDb::with_pool_size(12).await;
    db.client.queue_create("q").await.unwrap();
    let per_batch = 300;
    for round in 0..12u64 {
        let mut tasks = Vec::new();
        for worker in 0..6u64 {
            let c = db.client.clone();
            tasks.push(tokio::spawn(async move {
                let mut subjects: Vec<String> = (0..per_batch)
                    .map(|i| format!("r{round}-s{i:04}"))
                    .collect();
                match worker % 3 {
                    0 => {}
                    1 => subjects.reverse(),
                    _ => shuffle(&mut subjects, round * 31 + worker),
                }
                let docs: Vec<NewDoc> = subjects.iter().map(NewDoc::new).collect();
                if worker == 5 {
                    // the SQL function's path, side by side with the client's
                    let arr: Vec<_> = subjects.iter().map(|s| json!({"subject": s})).collect();
                    sqlx::query("SELECT fetchq.doc_push_many('q', $1)")
                        .bind(json!(arr))
                        .execute(c.pool())
                        .await
                        .map(|_| ())
                        .map_err(Error::from)
                } else {
                    c.push_many("q", &docs).await.map(|_| ())
                }
            }));
        }
        for t in tasks {
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    let counts = db.client.metric_compute("q").await.unwrap();
    assert_eq!(counts.total, 12 * per_batch);
}

#[tokio::test]
async fn push_many_keeps_the_first_of_repeated_subjects() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs = [
        NewDoc::new("b").payload(json!({"n": 1})),
        NewDoc::new("c"),
        NewDoc::new("a"),
        NewDoc::new("b").payload(json!({"n": 2})),
    ];
    assert_eq!(c.push_many("q", &docs).await.unwrap(), 3);
    assert_eq!(c.get("q", "b").await.unwrap().payload, json!({"n": 1}));
}

// ---------------------------------------------------------------- wake-ups

async fn listener(db: &TestDb) -> PgListener {
    let mut l = PgListener::connect_with(&db.pool).await.unwrap();
    l.listen("fetchq_pending").await.unwrap();
    l
}

/// The next fetchq_pending notification for `queue` within `within`.
async fn notified(l: &mut PgListener, queue: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, l.recv()).await {
            Err(_) => return false,
            Ok(n) => {
                if n.unwrap().payload() == queue {
                    return true;
                }
            }
        }
    }
}

#[tokio::test]
async fn an_open_pushing_transaction_does_not_mute_other_pushes() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let mut l = listener(&db).await;

    // a long "push inside your own transaction", still open
    let mut tx = c.pool().begin().await.unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("in-tx"))
        .await
        .unwrap();
    let mut tx_many = c.pool().begin().await.unwrap();
    c.push_many_with(&mut *tx_many, "q", &[NewDoc::new("in-tx-many")])
        .await
        .unwrap();
    assert!(
        !notified(&mut l, "q", Duration::from_millis(200)).await,
        "nothing committed yet"
    );

    // a committed push beside them is heard
    c.push("q", &NewDoc::new("committed")).await.unwrap();
    assert!(
        notified(&mut l, "q", Duration::from_secs(2)).await,
        "the committed push sent no wake-up while another pushing transaction was open"
    );
    c.push_many("q", &[NewDoc::new("committed-many")])
        .await
        .unwrap();
    assert!(notified(&mut l, "q", Duration::from_secs(2)).await);

    // the open ones: a rollback sends nothing, a commit sends its own
    tx.rollback().await.unwrap();
    assert!(
        !notified(&mut l, "q", Duration::from_millis(300)).await,
        "a rollback notified"
    );
    tx_many.commit().await.unwrap();
    assert!(notified(&mut l, "q", Duration::from_secs(2)).await);
    assert_eq!(c.metric_compute("q").await.unwrap().pending, 3);
}

#[tokio::test]
async fn a_rolled_back_push_leaves_wake_ups_working() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let mut l = listener(&db).await;
    let mut tx = c.pool().begin().await.unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("doomed"))
        .await
        .unwrap();
    // a committed push while the doomed transaction is open, through the SQL function
    sqlx::query("SELECT fetchq.doc_push('q', 'sql')")
        .execute(c.pool())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        notified(&mut l, "q", Duration::from_secs(2)).await,
        "no wake-up at all: the committed push was muted by one that rolled back"
    );
    // and nothing of the rolled back wish is left behind
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.pending_hints")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    // a later push is heard too
    c.push("q", &NewDoc::new("later")).await.unwrap();
    assert!(notified(&mut l, "q", Duration::from_secs(2)).await);
}

#[tokio::test]
async fn one_transaction_pushing_many_times_sends_one_wake_up_per_queue() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.queue_create("r").await.unwrap();
    let mut l = listener(&db).await;
    let mut tx = c.pool().begin().await.unwrap();
    for i in 0..5 {
        c.push_with(&mut *tx, "q", &NewDoc::new(format!("q{i}")))
            .await
            .unwrap();
    }
    c.push_with(&mut *tx, "r", &NewDoc::new("r")).await.unwrap();
    tx.commit().await.unwrap();
    let mut got = Vec::new();
    while let Ok(n) = tokio::time::timeout(Duration::from_millis(500), l.recv()).await {
        got.push(n.unwrap().payload().to_owned());
    }
    got.sort();
    assert_eq!(got, ["q", "r"]);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.pending_hints")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "hint rows are deleted at commit");
}

#[tokio::test]
async fn the_engine_own_pushes_register_no_hint_row_or_setting() {
    // The wake-up of a push rides on its 'ent' counter row: no per-transaction
    // hint row, trigger or set_config on the hot path (they cost a fifth of
    // one-document push throughput).
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let mut l = listener(&db).await;
    let mut tx = c.pool().begin().await.unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("a")).await.unwrap();
    c.push_many_with(&mut *tx, "q", &[NewDoc::new("b")])
        .await
        .unwrap();
    sqlx::query("SELECT fetchq.doc_push('q', 'c')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.pending_hints")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let setting: Option<String> =
        sqlx::query_scalar("SELECT nullif(current_setting('fetchq.hint_q', true), '')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!((rows, setting), (0, None));
    tx.commit().await.unwrap();
    assert!(notified(&mut l, "q", Duration::from_secs(2)).await);
}

/// Drains notifications until none came for 300 ms; returns the queues heard.
async fn drain(l: &mut PgListener) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(n) = tokio::time::timeout(Duration::from_millis(300), l.recv()).await {
        got.push(n.unwrap().payload().to_owned());
    }
    got
}

#[tokio::test]
async fn every_path_that_makes_documents_pending_or_pushes_wakes_and_reschedules_later_do_not() {
    let db = TestDb::new().await;
    let c = &db.client;
    let pool = c.pool();
    c.queue_create("q").await.unwrap();
    let mut l = listener(&db).await;
    let sql = |q: &'static str| sqlx::query(q).execute(pool);
    let hour = Schedule::after(Duration::from_secs(3600));
    let soon = || Schedule::after(Duration::from_millis(300));

    c.push("q", &NewDoc::new("p1")).await.unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "per-queue push");
    c.push("q", &NewDoc::new("planned").at(hour)).await.unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "per-queue push, planned");
    c.push_many(
        "q",
        &[
            NewDoc::new("m1"),
            NewDoc::new("m2").at(hour),
            NewDoc::new("m3"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "per-queue push_many");
    sql("SELECT fetchq.doc_push('q', 's1', '{}'::jsonb, now() + interval '1 hour')")
        .await
        .unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "doc_push, planned");
    sql(r#"SELECT fetchq.doc_push_many('q', '[{"subject": "sm1"}, {"subject": "sm2"}]')"#)
        .await
        .unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "doc_push_many");
    sql("SELECT fetchq.doc_append('q', '{}')").await.unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "doc_append");
    sql("SELECT fetchq.doc_upsert('q', 'u1', 0, 0, now(), '{}')")
        .await
        .unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "doc_upsert");
    // a duplicate push changes nothing and wakes nobody
    c.push("q", &NewDoc::new("p1")).await.unwrap();
    assert!(drain(&mut l).await.is_empty(), "a duplicate push notified");

    // take every pending document; reschedules to later and completions are silent
    let mut docs = c.pick("q", &PickOptions::new().limit(100)).await.unwrap();
    assert_eq!(docs.len(), 7);
    assert!(
        drain(&mut l).await.is_empty(),
        "a pick promoting nothing notified"
    );
    let d = docs.pop().unwrap();
    c.reschedule(&d.lease, hour, None).await.unwrap();
    let d = docs.pop().unwrap();
    c.reschedule_many("q", &[(d.lease.clone(), hour, None)])
        .await
        .unwrap();
    let d = docs.pop().unwrap();
    c.complete(&d.lease, None).await.unwrap();
    assert!(
        drain(&mut l).await.is_empty(),
        "a reschedule to later or a completion notified"
    );

    // back to pending: reschedule now, both ways; reject with no retry delay; release
    let d = docs.pop().unwrap();
    c.reschedule(&d.lease, Schedule::Now, None).await.unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "per-queue reschedule to now");
    let d = docs.pop().unwrap();
    c.reschedule_many("q", &[(d.lease.clone(), Schedule::Now, None)])
        .await
        .unwrap();
    assert_eq!(
        drain(&mut l).await,
        ["q"],
        "per-queue reschedule_many to now"
    );
    sql("SELECT fetchq.queue_set_retry_backoff('q', '0', '0', 0)")
        .await
        .unwrap();
    let d = docs.pop().unwrap();
    sqlx::query("SELECT fetchq.doc_reject('q', $1, 'again')")
        .bind(&d.subject)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "reject to pending");
    let d = docs.pop().unwrap();
    sqlx::query("SELECT fetchq.doc_release('q', ARRAY[$1], ARRAY[$2])")
        .bind(&d.subject)
        .bind(d.lease.token)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "doc_release");

    // planned documents falling due: promoted by a pick that leaves some pending,
    // by the SQL doc_pick, and by mnt_make_pending
    c.pick("q", &PickOptions::new().limit(100)).await.unwrap();
    c.push_many(
        "q",
        &[
            NewDoc::new("due1").at(soon()),
            NewDoc::new("due2").at(soon()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(drain(&mut l).await, ["q"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        c.pick("q", &PickOptions::new().limit(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        drain(&mut l).await,
        ["q"],
        "per-queue pick promoting more than it took"
    );
    c.push_many(
        "q",
        &[
            NewDoc::new("due3").at(soon()),
            NewDoc::new("due4").at(soon()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(drain(&mut l).await, ["q"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    sql("SELECT * FROM fetchq.doc_pick('q', 0, 1, '5 minutes')")
        .await
        .unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "doc_pick promoting");
    c.push("q", &NewDoc::new("due5").at(soon())).await.unwrap();
    assert_eq!(drain(&mut l).await, ["q"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let made: i32 = sqlx::query_scalar("SELECT affected_rows FROM fetchq.mnt_make_pending('q')")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(made, 1);
    assert_eq!(drain(&mut l).await, ["q"], "mnt_make_pending");

    // the explicit hint still works for callers that write no counters
    sql("SELECT fetchq.pending_hint('q')").await.unwrap();
    assert_eq!(drain(&mut l).await, ["q"], "pending_hint");
}

// ---------------------------------------------------------------- counter repair

#[tokio::test]
async fn concurrent_counter_repairs_pushes_and_packs_agree_with_a_real_count() {
    let db = TestDb::with_pool_size(16).await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.queue_create("r").await.unwrap();
    c.push_many(
        "q",
        &(0..50)
            .map(|i| NewDoc::new(format!("seed{i}")).version(i % 3))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for kind in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let r: Result<(), Error> = match kind {
                    0..=2 => c.metric_reset("q").await.map(|_| ()),
                    3 => sqlx::query("SELECT * FROM fetchq.metric_reset_all()")
                        .execute(c.pool())
                        .await
                        .map(|_| ())
                        .map_err(Error::from),
                    4 => c.queue_truncate("r", i % 2 == 0).await,
                    5 => c.metric_log_pack().await.map(|_| ()),
                    6 | 7 => c
                        .push_many(
                            "q",
                            &(0..20)
                                .map(|j| NewDoc::new(format!("k{kind}-{i}-{j}")).version(j % 4))
                                .collect::<Vec<_>>(),
                        )
                        .await
                        .map(|_| ()),
                    8 => c
                        .push("r", &NewDoc::new(format!("r{i}")).version(i % 2))
                        .await
                        .map(|_| ()),
                    _ => c.pick("q", &PickOptions::new().limit(3)).await.map(|_| ()),
                };
                r.unwrap_or_else(|e| panic!("task {kind}, call {i}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    c.metric_log_pack().await.unwrap();
    for queue in ["q", "r"] {
        let real = c.metric_compute(queue).await.unwrap();
        let counters = c.metric_get_common(queue).await.unwrap();
        assert_eq!(
            (
                counters.total,
                counters.pending,
                counters.planned,
                counters.active
            ),
            (real.total, real.pending, real.planned, real.active),
            "counters of {queue}"
        );
        let per_version: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(value), 0)::bigint FROM fetchq.metrics WHERE queue = $1 AND metric ~ '^v[0-9]+$'",
        )
        .bind(queue)
        .fetch_one(c.pool())
        .await
        .unwrap();
        assert_eq!(per_version, real.total, "per-version counters of {queue}");
    }
}

// ---------------------------------------------------------------- backoff

#[tokio::test]
async fn retry_backoff_never_overflows_and_is_capped() {
    let db = TestDb::new().await;
    let c = &db.client;
    let year = 365.0 * 86_400.0;
    for attempts in [1, 2, 30, 31, 32, 63, 64, 1000, i32::MAX] {
        for r in [-1.0f64, 0.0, 1.0] {
            let secs: f64 = sqlx::query_scalar(
                "SELECT extract(epoch FROM fetchq.retry_backoff($1, interval '3 hours', interval '1000 years', 0.2, $2))::float8",
            )
            .bind(attempts)
            .bind(r)
            .fetch_one(c.pool())
            .await
            .unwrap_or_else(|e| panic!("attempts {attempts}: {e}"));
            assert!(secs > 0.0 && secs <= year, "attempts {attempts}: {secs} s");
        }
    }
    // the usual cases are unchanged: delay * 2^(attempts-1), capped at max_delay
    let cases = [(1, 1.0), (3, 4.0), (13, 3600.0), (40, 3600.0)];
    for (attempts, want) in cases {
        let secs: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM fetchq.retry_backoff($1, interval '1 second', interval '1 hour', 0.2, 0))::float8",
        )
        .bind(attempts)
        .fetch_one(c.pool())
        .await
        .unwrap();
        assert!((secs - want).abs() < 1e-6, "attempts {attempts}: {secs} s");
    }
}

#[tokio::test]
async fn a_reject_after_many_attempts_with_a_large_base_delay_works() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.queue_set_max_attempts("q", 100_000).await.unwrap();
    c.queue_set_retry_backoff(
        "q",
        Duration::from_secs(3 * 3600),
        Duration::from_secs(50 * 365 * 86_400),
        0.2,
    )
    .await
    .unwrap();
    for (i, attempts) in [29, 30, 31, 45, 5000].into_iter().enumerate() {
        let subject = format!("s{i}");
        c.push("q", &NewDoc::new(&subject)).await.unwrap();
        sqlx::query("UPDATE fetchq_data.q__docs SET attempts = $1 WHERE subject = $2")
            .bind(attempts)
            .bind(&subject)
            .execute(c.pool())
            .await
            .unwrap();
        let doc = c
            .pick("q", &PickOptions::new())
            .await
            .unwrap()
            .pop()
            .unwrap();
        c.reject(&doc.lease, "boom", None, None)
            .await
            .unwrap_or_else(|e| panic!("reject at attempt {}: {e}", attempts + 1));
        let after = c.get("q", &subject).await.unwrap();
        assert_eq!(after.status, Status::Planned);
        let wait = after.next_iteration - chrono::Utc::now();
        assert!(
            wait > chrono::Duration::hours(1) && wait <= chrono::Duration::days(366),
            "attempt {}: retry in {wait}",
            attempts + 1
        );
    }
}

// ---------------------------------------------------------------- idle next-due

#[tokio::test]
async fn next_due_for_a_version_ignores_pauses_other_versions_and_locked_documents() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    assert_eq!(
        c.queue_next_due_for("q", 0).await.unwrap(),
        None,
        "empty queue"
    );
    assert_eq!(c.queue_next_due_in("q").await.unwrap(), None, "empty queue");

    c.push(
        "q",
        &NewDoc::new("v1-soon")
            .version(1)
            .at(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(
        c.queue_next_due_for("q", 0).await.unwrap(),
        None,
        "only another version"
    );
    let v1 = c.queue_next_due_for("q", 1).await.unwrap().unwrap();
    assert!(
        v1 > Duration::from_secs(25) && v1 <= Duration::from_secs(30),
        "{v1:?}"
    );

    c.push("q", &NewDoc::new("v0-later").at(Duration::from_secs(600)))
        .await
        .unwrap();
    let v0 = c.queue_next_due_for("q", 0).await.unwrap().unwrap();
    assert!(v0 > Duration::from_secs(500), "{v0:?}");

    // paused: nothing will be picked until it resumes (which notifies)
    c.queue_pause("q").await.unwrap();
    assert_eq!(c.queue_next_due_for("q", 1).await.unwrap(), None, "paused");
    c.queue_resume("q").await.unwrap();

    // a due planned document held by a long transaction: not "due now" forever
    sqlx::query("UPDATE fetchq_data.q__docs SET next_iteration = now() - interval '1 minute' WHERE subject = 'v1-soon'")
        .execute(c.pool())
        .await
        .unwrap();
    let mut holder = c.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq_data.q__docs WHERE subject = 'v1-soon' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    assert!(
        c.pick("q", &PickOptions::new().version(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.queue_next_due_for("q", 1).await.unwrap(),
        None,
        "row-locked due document"
    );
    holder.rollback().await.unwrap();
    assert_eq!(
        c.pick("q", &PickOptions::new().version(1))
            .await
            .unwrap()
            .len(),
        1
    );

    assert!(matches!(
        c.queue_next_due_for("q", -1).await,
        Err(Error::InvalidArgument { .. })
    ));
}

#[tokio::test]
async fn an_empty_pick_idle_says_when_the_next_document_of_its_version_is_due() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let v0 = PickOptions::new();
    let v1 = PickOptions::new().version(1);
    let (docs, due) = c.pick_idle("q", &v0).await.unwrap();
    assert!(docs.is_empty());
    assert_eq!(due, None, "empty queue");

    c.push(
        "q",
        &NewDoc::new("v1-soon")
            .version(1)
            .at(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(
        c.pick_idle("q", &v0).await.unwrap(),
        (vec![], None),
        "only another version"
    );
    let (docs, due) = c.pick_idle("q", &v1).await.unwrap();
    assert!(docs.is_empty());
    let due = due.unwrap();
    assert!(
        due > Duration::from_secs(25) && due <= Duration::from_secs(30),
        "{due:?}"
    );

    // something leased: no look-up, no duration
    c.push("q", &NewDoc::new("v0-now")).await.unwrap();
    c.push("q", &NewDoc::new("v0-later").at(Duration::from_secs(600)))
        .await
        .unwrap();
    let (docs, due) = c.pick_idle("q", &v0.limit(5)).await.unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].subject, "v0-now");
    assert_eq!(due, None, "documents were leased");
    let (docs, due) = c.pick_idle("q", &v0).await.unwrap();
    assert!(docs.is_empty());
    assert!(due.unwrap() > Duration::from_secs(500), "{due:?}");

    // paused: nothing will be picked until it resumes (which notifies)
    c.queue_pause("q").await.unwrap();
    assert_eq!(
        c.pick_idle("q", &v1).await.unwrap(),
        (vec![], None),
        "paused"
    );
    c.queue_resume("q").await.unwrap();

    // a due planned document held by a long transaction: not "due now" forever
    sqlx::query("UPDATE fetchq_data.q__docs SET next_iteration = now() - interval '1 minute' WHERE subject = 'v1-soon'")
        .execute(c.pool())
        .await
        .unwrap();
    let mut holder = c.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq_data.q__docs WHERE subject = 'v1-soon' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    assert_eq!(
        c.pick_idle("q", &v1).await.unwrap(),
        (vec![], None),
        "row-locked due document"
    );
    holder.rollback().await.unwrap();
    let (docs, due) = c.pick_idle("q", &v1).await.unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(due, None);

    // a planned document due a moment ago is promoted and picked in the
    // second round, as by pick
    c.push(
        "q",
        &NewDoc::new("v1-next")
            .version(1)
            .at(Duration::from_millis(150)),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (docs, due) = c.pick_idle("q", &v1).await.unwrap();
    assert_eq!(docs.len(), 1, "{due:?}");
    assert_eq!(docs[0].subject, "v1-next");

    assert!(matches!(
        c.pick_idle("q", &PickOptions::new().version(-1)).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.pick_idle("missing", &v0).await,
        Err(Error::QueueNotFound { .. })
    ));
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn a_negative_migration_version_is_refused_before_it_is_sent() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("a")).await.unwrap();
    let doc = c
        .pick("q", &PickOptions::new())
        .await
        .unwrap()
        .pop()
        .unwrap();
    let err = c
        .migrate_version(&doc.lease, -1, None, Schedule::now())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(!err.is_transient());
    // refused by the client: a lease on a queue that does not exist would
    // otherwise come back as QueueNotFound from the server
    let ghost = Lease {
        queue: "no_such_queue".into(),
        ..doc.lease.clone()
    };
    let err = c
        .migrate_version(&ghost, -1, None, Schedule::now())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    // and the document is untouched: still held by the same lease
    c.complete(&doc.lease, None).await.unwrap();
}

#[tokio::test]
async fn nul_in_payloads_or_text_is_a_permanent_invalid_argument_on_every_resolution_path() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    for i in 0..10 {
        c.push("q", &NewDoc::new(format!("d{i}")).payload(json!({"n": i})))
            .await
            .unwrap();
    }
    let docs = c.pick("q", &PickOptions::new().limit(10)).await.unwrap();
    assert_eq!(docs.len(), 10);
    let bad = json!({"text": "a\u{0}b"});
    let leases: Vec<Lease> = docs.iter().map(|d| d.lease.clone()).collect();
    let check = |what: &str, r: Result<(), Error>| match r {
        Err(e @ Error::InvalidArgument { .. }) => assert!(!e.is_transient(), "{what}"),
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    };
    check("complete", c.complete(&leases[0], Some(&bad)).await);
    check(
        "complete_many",
        c.complete_many(
            "q",
            &[
                (leases[1].clone(), None),
                (leases[2].clone(), Some(bad.clone())),
            ],
        )
        .await
        .map(|_| ()),
    );
    check(
        "reschedule",
        c.reschedule(&leases[3], Schedule::now(), Some(&bad)).await,
    );
    check(
        "reschedule_many",
        c.reschedule_many(
            "q",
            &[
                (leases[4].clone(), Schedule::now(), None),
                (leases[5].clone(), Schedule::now(), Some(bad.clone())),
            ],
        )
        .await
        .map(|_| ()),
    );
    check(
        "reject message",
        c.reject(&leases[6], "bad\0message", None, None).await,
    );
    check(
        "reject details",
        c.reject(&leases[6], "ok", Some(&bad), None).await,
    );
    check(
        "reject ref_id",
        c.reject(&leases[6], "ok", None, Some("ref\0")).await,
    );
    check("kill", c.kill(&leases[7], Some(&bad)).await);
    check(
        "migrate",
        c.migrate_version(&leases[8], 1, Some(&bad), Schedule::now())
            .await,
    );
    // nothing was written: every document is still held by its lease, with its payload
    for (i, lease) in leases.iter().enumerate() {
        let state = c.get("q", &lease.subject).await.unwrap();
        assert_eq!(state.status, Status::Active, "{}", lease.subject);
        assert_eq!(state.payload, json!({"n": i}), "{}", lease.subject);
    }
    let logs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.q__logs")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(logs, 0);
    let done = c
        .complete_many(
            "q",
            &leases.iter().map(|l| (l.clone(), None)).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(
        done.len(),
        10,
        "the leases still hold after the refused calls"
    );
}
