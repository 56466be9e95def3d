//! The client's per-queue statements (push, push_many, pick, complete_many,
//! reschedule_many) against the SQL functions they stand in for.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{Client, Error, NewDoc, PickOptions, Retention, Schedule, Status};
use fetchq_testing::TestDb;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

/// 40 documents with distinct priorities (so both picks see one order), two
/// versions, a quarter planned an hour ahead, and one repeated subject.
fn batch() -> Vec<NewDoc> {
    let mut docs: Vec<NewDoc> = (0..40)
        .map(|i| {
            let doc = NewDoc::new(format!("d{i}"))
                .version(i % 2)
                .priority(i)
                .payload(json!({ "i": i }));
            if i % 4 == 0 {
                doc.at(Duration::from_secs(3600))
            } else {
                doc
            }
        })
        .collect();
    docs.push(NewDoc::new("d1").priority(99)); // repeated: the first one wins
    docs
}

fn batch_json() -> Value {
    Value::Array(
        (0..40)
            .map(|i| {
                let mut doc = json!({"subject": format!("d{i}"), "version": i % 2, "priority": i, "payload": {"i": i}});
                if i % 4 == 0 {
                    doc["next_iteration"] = json!("2999-01-01T00:00:00Z");
                }
                doc
            })
            .chain([json!({"subject": "d1", "priority": 99})])
            .collect(),
    )
}

/// Runs the workload through the client's per-queue statements.
async fn through_client(c: &Client, retention: Retention) {
    c.queue_create("rust").await.unwrap();
    c.queue_set_completed_retention("rust", retention)
        .await
        .unwrap();
    assert_eq!(c.push_many("rust", &batch()).await.unwrap(), 40);
    assert!(c.push("rust", &NewDoc::new("single")).await.unwrap());
    assert!(!c.push("rust", &NewDoc::new("d3")).await.unwrap());
    for version in 0..2 {
        let picked = c
            .pick("rust", &PickOptions::new().version(version).limit(10))
            .await
            .unwrap();
        assert_eq!(picked.len(), 10);
        let (done, rest) = picked.split_at(5);
        let completes: Vec<_> = done
            .iter()
            .enumerate()
            .map(|(i, d)| (d.lease.clone(), (i == 0).then(|| json!({"final": true}))))
            .collect();
        assert_eq!(c.complete_many("rust", &completes).await.unwrap().len(), 5);
        let reschedules: Vec<_> = rest[..3]
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let at = if i == 0 {
                    Schedule::now()
                } else {
                    Schedule::after(Duration::from_secs(3600))
                };
                (d.lease.clone(), at, (i == 1).then(|| json!({"again": 1})))
            })
            .collect();
        assert_eq!(
            c.reschedule_many("rust", &reschedules).await.unwrap().len(),
            3
        );
    }
}

/// Runs the same workload through the SQL functions.
async fn through_sql(db: &TestDb, retention: Retention) {
    let pool = &db.pool;
    sqlx::query("SELECT fetchq.queue_create('sql')")
        .execute(pool)
        .await
        .unwrap();
    db.client
        .queue_set_completed_retention("sql", retention)
        .await
        .unwrap();
    sqlx::query("SELECT fetchq.doc_push_many('sql', $1)")
        .bind(batch_json())
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("SELECT fetchq.doc_push('sql', 'single')")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("SELECT fetchq.doc_push('sql', 'd3')")
        .execute(pool)
        .await
        .unwrap();
    for version in 0..2 {
        let picked: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT subject::text, lease_token FROM fetchq.doc_pick('sql', $1, 10, interval '5 minutes')",
        )
        .bind(version)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(picked.len(), 10);
        let (subjects, tokens): (Vec<String>, Vec<Uuid>) = picked.into_iter().unzip();
        let mut payloads = vec![None::<Value>; 5];
        payloads[0] = Some(json!({"final": true}));
        sqlx::query("SELECT count(*) FROM fetchq.doc_complete_many('sql', $1, $2, $3)")
            .bind(&subjects[..5])
            .bind(&tokens[..5])
            .bind(payloads)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(
            "SELECT count(*) FROM fetchq.doc_reschedule_many('sql', $1, $2,
                ARRAY[NULL, NULL, NULL]::timestamptz[],
                ARRAY[interval '0', interval '1 hour', interval '1 hour'],
                ARRAY[NULL, '{\"again\": 1}', NULL]::jsonb[])",
        )
        .bind(&subjects[5..8])
        .bind(&tokens[5..8])
        .execute(pool)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn client_statements_and_sql_functions_leave_the_same_state_and_counters() {
    let db = TestDb::new().await;
    let c = &db.client;
    through_client(c, Retention::Keep).await;
    through_sql(&db, Retention::Keep).await;
    c.metric_log_pack().await.unwrap();

    let (rust, sql) = (
        c.metric_get_common("rust").await.unwrap(),
        c.metric_get_common("sql").await.unwrap(),
    );
    assert_eq!(rust, sql);
    assert_eq!((rust.total, rust.entered), (41, 41));
    assert_eq!(rust.picked, 20);
    assert_eq!((rust.completed, rust.rescheduled, rust.active), (10, 6, 4));
    assert_eq!(
        rust.status_counts(),
        c.metric_compute("rust").await.unwrap()
    );

    for subject in (0..40).map(|i| format!("d{i}")).chain(["single".into()]) {
        let (a, b) = (
            c.get("rust", &subject).await.unwrap(),
            c.get("sql", &subject).await.unwrap(),
        );
        assert_eq!(
            (
                a.status,
                a.version,
                a.priority,
                a.attempts,
                a.iterations,
                &a.payload
            ),
            (
                b.status,
                b.version,
                b.priority,
                b.attempts,
                b.iterations,
                &b.payload
            ),
            "{subject}"
        );
    }
}

async fn version_counters(pool: &sqlx::PgPool, queue: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT metric::text, value FROM fetchq.metrics WHERE queue = $1 AND metric ~ '^v' ORDER BY 1",
    )
    .bind(queue)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The same with completed documents deleted at once (schema 20): both
/// paths delete the same documents and write the same counters.
#[tokio::test]
async fn client_statements_and_sql_functions_delete_at_once_alike() {
    let db = TestDb::new().await;
    let c = &db.client;
    through_client(c, Retention::AtOnce).await;
    through_sql(&db, Retention::AtOnce).await;
    c.metric_log_pack().await.unwrap();

    let (rust, sql) = (
        c.metric_get_common("rust").await.unwrap(),
        c.metric_get_common("sql").await.unwrap(),
    );
    assert_eq!(rust, sql);
    assert_eq!((rust.total, rust.entered), (31, 41));
    assert_eq!((rust.completed, rust.rescheduled, rust.active), (0, 6, 4));
    assert_eq!(rust.processed, 16);
    for q in ["rust", "sql"] {
        assert_eq!(
            c.metric_get_common(q).await.unwrap().status_counts(),
            c.metric_compute(q).await.unwrap(),
            "{q}"
        );
    }
    let (rust_v, sql_v) = (
        version_counters(&db.pool, "rust").await,
        version_counters(&db.pool, "sql").await,
    );
    assert_eq!(rust_v, sql_v);
    assert_eq!(rust_v, [("v0".to_owned(), 16), ("v1".to_owned(), 15)]);
    for subject in (0..40).map(|i| format!("d{i}")).chain(["single".into()]) {
        let (a, b) = (c.get("rust", &subject).await, c.get("sql", &subject).await);
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(
                (a.status, a.attempts, a.iterations, &a.payload),
                (b.status, b.attempts, b.iterations, &b.payload),
                "{subject}"
            ),
            (Err(Error::NotFound { .. }), Err(Error::NotFound { .. })) => {}
            (a, b) => panic!("{subject}: client path {a:?}, SQL path {b:?}"),
        }
    }
}

#[tokio::test]
async fn a_dropped_and_recreated_queue_works_on_the_same_connection() {
    let db = TestDb::new().await;
    // one connection: the statements it prepared for the first queue are reused
    let pool = db.pool_on(&db.name, 1).await;
    let c = Client::new(pool);
    for round in 0..2 {
        c.queue_create("phoenix").await.unwrap();
        c.push("phoenix", &NewDoc::new(format!("r{round}")))
            .await
            .unwrap();
        let docs = c.pick("phoenix", &PickOptions::new()).await.unwrap();
        assert_eq!(docs.len(), 1, "round {round}");
        let done = c
            .complete_many("phoenix", &[(docs[0].lease.clone(), None)])
            .await
            .unwrap();
        assert_eq!(done, [format!("r{round}")]);
        assert!(c.queue_drop("phoenix").await.unwrap());
    }
    let err = c.pick("phoenix", &PickOptions::new()).await.unwrap_err();
    assert!(
        matches!(err, Error::QueueNotFound { ref queue } if queue == "phoenix"),
        "{err:?}"
    );
    let err = c.push("phoenix", &NewDoc::new("x")).await.unwrap_err();
    assert!(matches!(err, Error::QueueNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_paused_queue_neither_picks_nor_promotes() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("soon").at(Duration::from_millis(300)))
        .await
        .unwrap();
    c.queue_pause("q").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.pick("q", &PickOptions::new()).await.unwrap().is_empty());
    assert_eq!(c.get("q", "soon").await.unwrap().status, Status::Planned);
    c.queue_resume("q").await.unwrap();
    // promoted and leased by the same call
    let docs = c.pick("q", &PickOptions::new()).await.unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(c.get("q", "soon").await.unwrap().status, Status::Active);
}

/// PostgreSQL may switch a prepared statement to a generic plan, made without
/// knowing the limit or the arrays. Forced to, the statements must still find
/// rows through indexes, not by scanning the table.
#[tokio::test]
async fn generic_plans_do_not_scan_the_documents_table() {
    let db = TestDb::new().await;
    let c = &db.client;
    // "once" deletes completed documents at once (schema 20; set by hand:
    // the setter's index build would scan the table)
    for q in ["big", "once"] {
        c.queue_create(q).await.unwrap();
        let docs: Vec<NewDoc> = (0..20_000).map(|i| NewDoc::new(format!("d{i}"))).collect();
        for chunk in docs.chunks(5_000) {
            c.push_many(q, chunk).await.unwrap();
        }
    }
    sqlx::query("UPDATE fetchq.queues SET completed_retention = '0' WHERE name = 'once'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE fetchq_data.big__docs, fetchq_data.once__docs")
        .execute(&db.pool)
        .await
        .unwrap();
    // autovacuum, woken by the 40,000 inserts, counts scans of its own
    // while the statements run: this test counts only theirs
    sqlx::raw_sql(
        "ALTER TABLE fetchq_data.big__docs SET (autovacuum_enabled = false);
         ALTER TABLE fetchq_data.once__docs SET (autovacuum_enabled = false)",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let options: PgConnectOptions = db.url().parse().unwrap();
    let options = options.options([("plan_cache_mode", "force_generic_plan")]);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let generic = Client::new(pool.clone());
    let seq_scans = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT sum(seq_scan)::bigint FROM pg_stat_user_tables
             WHERE relid IN ('fetchq_data.big__docs'::regclass, 'fetchq_data.once__docs'::regclass)",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let before = seq_scans().await;
    for (i, q) in (0..8).flat_map(|i| [(i, "big"), (i, "once")]) {
        let docs = generic
            .pick(q, &PickOptions::new().limit(32))
            .await
            .unwrap();
        assert_eq!(docs.len(), 32);
        let (done, again) = docs.split_at(16);
        let done: Vec<_> = done.iter().map(|d| (d.lease.clone(), None)).collect();
        assert_eq!(generic.complete_many(q, &done).await.unwrap().len(), 16);
        let again: Vec<_> = again
            .iter()
            .map(|d| (d.lease.clone(), Schedule::now(), None))
            .collect();
        generic.reschedule_many(q, &again).await.unwrap();
        generic
            .push(q, &NewDoc::new(format!("new{i}")))
            .await
            .unwrap();
    }
    // the backend reports its statistics when it goes idle after this
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        seq_scans().await,
        before,
        "a per-queue statement scanned the table"
    ); // (a real count scans the table: after the check)
    assert_eq!(
        c.metric_compute("once").await.unwrap().total,
        20_000 - 8 * 16 + 8,
        "deleted at once"
    );
}

/// EXPLAIN ANALYZE of `sql/per_queue/pick.sql` for queue `q`, version 0, one
/// document, `next_due` as the fourth parameter; with `generic`, planned as
/// a prepared statement reused many times is (`$4` unknown to the planner).
async fn explain_pick(db: &TestDb, next_due: bool, generic: bool) -> String {
    let sql = include_str!("../sql/per_queue/pick.sql")
        .replace("{docs}", "\"fetchq_data\".\"q__docs\"")
        .replace("{limit}", "1");
    let mut tx = db.client.pool().begin().await.unwrap();
    let rows: Vec<String> = if generic {
        // EXECUTE of a prepared statement, as sqlx runs it once reused
        sqlx::raw_sql(&format!(
            "SET LOCAL plan_cache_mode = force_generic_plan; \
             PREPARE pick_plan(text, integer, interval, boolean, bigint) AS {sql}"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE pick_plan('q', 0, '300 seconds', {next_due}, NULL)"
        ))
        .fetch_all(&mut *tx)
        .await
        .unwrap()
    } else {
        sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
            .bind("q")
            .bind(0_i32)
            .bind(Duration::from_secs(300))
            .bind(next_due)
            .bind(None::<i64>)
            .fetch_all(&mut *tx)
            .await
            .unwrap()
    };
    if generic {
        sqlx::query("DEALLOCATE pick_plan")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    rows.join("\n")
}

/// The plan lines about the next-due look-up (its function scan).
fn next_due_scan(plan: &str) -> Vec<&str> {
    plan.lines()
        .filter(|l| l.contains("Function Scan on queue_next_due"))
        .collect()
}

/// The look-up is not run: never executed, or planned away.
fn not_run(plan: &str) -> bool {
    next_due_scan(plan)
        .iter()
        .all(|l| l.contains("never executed"))
}

#[tokio::test]
async fn the_next_due_look_up_of_a_pick_runs_only_when_nothing_was_leased() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    for i in 0..4 {
        c.push("q", &NewDoc::new(format!("d{i}"))).await.unwrap();
    }

    // leased: the look-up is never run, whatever $4 says
    for (next_due, generic) in [(true, false), (true, true), (false, false), (false, true)] {
        let plan = explain_pick(&db, next_due, generic).await;
        assert!(plan.contains("rows=1"), "{plan}");
        assert!(not_run(&plan), "{plan}");
        if next_due || generic {
            assert_eq!(next_due_scan(&plan).len(), 1, "{plan}");
        }
    }

    // empty pick, look-up not asked for: not run
    c.push("q", &NewDoc::new("later").at(Duration::from_secs(60)))
        .await
        .unwrap();
    for generic in [false, true] {
        let plan = explain_pick(&db, false, generic).await;
        assert!(not_run(&plan), "{plan}");
    }

    // empty and asked for: run once
    for generic in [false, true] {
        let plan = explain_pick(&db, true, generic).await;
        let scan = next_due_scan(&plan);
        assert_eq!(scan.len(), 1, "{plan}");
        assert!(scan[0].contains("loops=1"), "{plan}");
        assert!(!not_run(&plan), "{plan}");
    }
}
