//! Retention of completed documents (schema 20): keep, delete after an
//! interval (maintenance, in batches), delete at once (the completion).

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::collections::BTreeMap;
use std::time::Duration;

use fetchq_core::{Client, Error, NewDoc, PickOptions, Retention, Status};
use fetchq_testing::TestDb;
use serde_json::json;
use sqlx::{PgPool, Row};

const HOUR: Duration = Duration::from_secs(3600);

/// Pushes `n` documents `<prefix>-<i>` (version i % 3) and leases them all.
async fn leased(c: &Client, queue: &str, prefix: &str, n: usize) -> Vec<fetchq_core::Document> {
    let docs: Vec<NewDoc> = (0..n)
        .map(|i| NewDoc::new(format!("{prefix}-{i:05}")).version((i % 3) as i32))
        .collect();
    for chunk in docs.chunks(1000) {
        c.push_many(queue, chunk).await.unwrap();
    }
    let mut out = Vec::new();
    for v in 0..3 {
        loop {
            let got = c
                .pick(queue, &PickOptions::new().version(v).limit(1000))
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            out.extend(got);
        }
    }
    assert_eq!(out.len(), n);
    out
}

async fn rows(pool: &PgPool, queue: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM fetchq_data.{queue}__docs"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The status counters, exact at read, against a real count, and every
/// per-version counter (packed) against a real count by version.
async fn assert_counters_exact(c: &Client, queue: &str) {
    let counters = c.metric_get_common(queue).await.unwrap();
    assert_eq!(
        counters.status_counts(),
        c.metric_compute(queue).await.unwrap(),
        "status counters of {queue}"
    );
    c.metric_log_pack().await.unwrap();
    let real: BTreeMap<String, i64> = sqlx::query(&format!(
        "SELECT 'v' || version, count(*) FROM fetchq_data.{queue}__docs GROUP BY version"
    ))
    .fetch_all(c.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let counted: BTreeMap<String, i64> = sqlx::query(
        "SELECT metric::text, value FROM fetchq.metrics WHERE queue = $1 AND metric ~ '^v[0-9]+$' AND value <> 0",
    )
    .bind(queue)
    .fetch_all(c.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(counted, real, "version counters of {queue}");
}

async fn has_completed_index(pool: &PgPool, queue: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'fetchq_data' AND indexname = $1)",
    )
    .bind(format!("{queue}__docs_completed_idx"))
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn keep_is_the_default_and_unchanged() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("crawl").await.unwrap();
    assert_eq!(
        c.queue_status("crawl").await.unwrap().completed_retention,
        Retention::Keep
    );
    assert!(!has_completed_index(&db.pool, "crawl").await);
    let docs = leased(c, "crawl", "url", 20).await;
    c.complete(&docs[0].lease, Some(&json!({"ok": 1})))
        .await
        .unwrap();
    let items: Vec<_> = docs[1..].iter().map(|d| (d.lease.clone(), None)).collect();
    assert_eq!(c.complete_many("crawl", &items).await.unwrap().len(), 19);
    assert_eq!(rows(&db.pool, "crawl").await, 20);
    let first = c.get("crawl", "url-00000").await.unwrap();
    assert_eq!(first.status, Status::Completed);
    assert_eq!(first.payload, json!({"ok": 1}));
    // a completed subject is not admitted again
    assert!(!c.push("crawl", &NewDoc::new("url-00000")).await.unwrap());
    // maintenance leaves completed documents alone
    c.mnt_run("crawl", 500).await.unwrap();
    assert_eq!(c.mnt_drop_completed("crawl", 500).await.unwrap(), 0);
    assert_eq!(rows(&db.pool, "crawl").await, 20);
    let counters = c.metric_get_common("crawl").await.unwrap();
    assert_eq!((counters.completed, counters.processed), (20, 20));
    assert_counters_exact(c, "crawl").await;
}

#[tokio::test]
async fn at_once_deletes_through_every_completion_path() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("mail").await.unwrap();
    c.queue_set_completed_retention("mail", Retention::AtOnce)
        .await
        .unwrap();
    assert_eq!(
        c.queue_status("mail").await.unwrap().completed_retention,
        Retention::AtOnce
    );
    let docs = leased(c, "mail", "m", 40).await;

    // Client::complete (fetchq.doc_complete)
    c.complete(&docs[0].lease, None).await.unwrap();
    assert!(matches!(
        c.get("mail", &docs[0].subject).await,
        Err(Error::NotFound { .. })
    ));
    // the SQL function, with and without a token
    let n: i32 =
        sqlx::query_scalar("SELECT affected_rows FROM fetchq.doc_complete('mail', $1, NULL, $2)")
            .bind(&docs[1].subject)
            .bind(docs[1].lease.token)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(n, 1);
    let n: i32 = sqlx::query_scalar("SELECT affected_rows FROM fetchq.doc_complete('mail', $1)")
        .bind(&docs[2].subject)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Client::complete_many (the per-queue statement), three versions mixed
    let items: Vec<_> = docs[3..20]
        .iter()
        .map(|d| (d.lease.clone(), Some(json!({"sent": true}))))
        .collect();
    let mut done = c.complete_many("mail", &items).await.unwrap();
    done.sort();
    let mut want: Vec<String> = docs[3..20].iter().map(|d| d.subject.clone()).collect();
    want.sort();
    assert_eq!(done, want);
    // the SQL doc_complete_many
    let subjects: Vec<String> = docs[20..30].iter().map(|d| d.subject.clone()).collect();
    let tokens: Vec<uuid::Uuid> = docs[20..30].iter().map(|d| d.lease.token).collect();
    let payloads: Vec<Option<serde_json::Value>> = vec![None; 10];
    let mut done: Vec<String> = sqlx::query_scalar(
        "SELECT subject::text FROM fetchq.doc_complete_many('mail', $1, $2, $3)",
    )
    .bind(&subjects)
    .bind(&tokens)
    .bind(&payloads)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    done.sort();
    let mut want = subjects.clone();
    want.sort();
    assert_eq!(done, want);

    assert_eq!(rows(&db.pool, "mail").await, 10);
    let counters = c.metric_get_common("mail").await.unwrap();
    assert_eq!(
        (
            counters.total,
            counters.active,
            counters.completed,
            counters.processed
        ),
        (10, 10, 0, 30)
    );
    assert_eq!((counters.entered, counters.dropped), (40, 0));
    assert_counters_exact(c, "mail").await;

    // a deleted subject is admitted again, as a new document
    assert!(
        c.push("mail", &NewDoc::new(docs[0].subject.clone()))
            .await
            .unwrap()
    );
    assert!(
        c.push("mail", &NewDoc::new(docs[5].subject.clone()))
            .await
            .unwrap()
    );
    let again = c.get("mail", &docs[5].subject).await.unwrap();
    assert_eq!((again.status, again.iterations), (Status::Pending, 0));
    assert_counters_exact(c, "mail").await;

    // back to keep on the same pool (same prepared statements): completions keep
    c.queue_set_completed_retention("mail", Retention::Keep)
        .await
        .unwrap();
    assert!(!has_completed_index(&db.pool, "mail").await);
    let items: Vec<_> = docs[30..35]
        .iter()
        .map(|d| (d.lease.clone(), None))
        .collect();
    assert_eq!(c.complete_many("mail", &items).await.unwrap().len(), 5);
    c.complete(&docs[35].lease, None).await.unwrap();
    assert_eq!(
        c.get("mail", &docs[35].subject).await.unwrap().status,
        Status::Completed
    );
    // and at once again
    c.queue_set_completed_retention("mail", Retention::After(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        c.queue_status("mail").await.unwrap().completed_retention,
        Retention::AtOnce
    );
    let items: Vec<_> = docs[36..].iter().map(|d| (d.lease.clone(), None)).collect();
    assert_eq!(c.complete_many("mail", &items).await.unwrap().len(), 4);
    assert!(matches!(
        c.get("mail", &docs[39].subject).await,
        Err(Error::NotFound { .. })
    ));
    assert_counters_exact(c, "mail").await;

    // the documents completed while it kept them are deleted by maintenance
    assert_eq!(c.mnt_drop_completed("mail", 500).await.unwrap(), 6);
    assert_eq!(
        c.metric_compute("mail").await.unwrap().completed,
        0,
        "nothing completed is left"
    );
    assert_counters_exact(c, "mail").await;
}

#[tokio::test]
async fn a_lost_lease_completes_and_deletes_nothing() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("mail").await.unwrap();
    c.queue_set_completed_retention("mail", Retention::AtOnce)
        .await
        .unwrap();
    let first = leased(c, "mail", "m", 3).await;
    // the leases expire and maintenance gives the documents to someone else
    sqlx::query("UPDATE fetchq_data.mail__docs SET next_iteration = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(c.mnt_run("mail", 500).await.unwrap().rescheduled, 3);
    let second = c.pick("mail", &PickOptions::new().limit(10)).await.unwrap();
    assert_eq!(second.len(), 1, "version 0 only: one of the three");
    let stale = first
        .iter()
        .find(|d| d.subject == second[0].subject)
        .unwrap();

    assert!(matches!(
        c.complete(&stale.lease, None).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(
        c.complete_many("mail", &[(stale.lease.clone(), None)])
            .await
            .unwrap()
            .is_empty()
    );
    let n: i32 =
        sqlx::query_scalar("SELECT affected_rows FROM fetchq.doc_complete('mail', $1, NULL, $2)")
            .bind(&stale.subject)
            .bind(stale.lease.token)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(n, 0);
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fetchq.doc_complete_many('mail', ARRAY[$1], ARRAY[$2::uuid], ARRAY[NULL::jsonb])",
    )
    .bind(&stale.subject)
    .bind(stale.lease.token)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(n, 0);
    // a pending document (its lease long gone) cannot be completed either
    let pending = first
        .iter()
        .find(|d| d.lease.subject != stale.subject)
        .unwrap();
    assert!(matches!(
        c.complete(&pending.lease, None).await,
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(rows(&db.pool, "mail").await, 3);
    let state = c.get("mail", &stale.subject).await.unwrap();
    assert_eq!(state.status, Status::Active);
    assert_counters_exact(c, "mail").await;

    // the holder completes it
    c.complete(&second[0].lease, None).await.unwrap();
    assert_eq!(rows(&db.pool, "mail").await, 2);
    assert_counters_exact(c, "mail").await;
}

/// Completes every leased document, then dates the completion of the
/// first `old` of them `age` back.
async fn complete_all(c: &Client, queue: &str, docs: &[fetchq_core::Document]) {
    for chunk in docs.chunks(500) {
        let items: Vec<_> = chunk.iter().map(|d| (d.lease.clone(), None)).collect();
        assert_eq!(
            c.complete_many(queue, &items).await.unwrap().len(),
            chunk.len()
        );
    }
}

async fn age(pool: &PgPool, queue: &str, like: &str, by: &str) -> u64 {
    sqlx::query(&format!(
        "UPDATE fetchq_data.{queue}__docs SET last_iteration = now() - interval '{by}' WHERE subject LIKE $1"
    ))
    .bind(like)
    .execute(pool)
    .await
    .unwrap()
    .rows_affected()
}

#[tokio::test]
async fn maintenance_deletes_old_completed_documents_in_batches() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("jobs").await.unwrap();
    c.queue_set_completed_retention("jobs", Retention::After(HOUR))
        .await
        .unwrap();
    assert!(has_completed_index(&db.pool, "jobs").await);
    assert_eq!(
        c.queue_status("jobs").await.unwrap().completed_retention,
        Retention::After(HOUR)
    );
    // 1,200 completed two hours ago, 40 completed just now
    let old = leased(c, "jobs", "old", 1200).await;
    complete_all(c, "jobs", &old).await;
    let recent = leased(c, "jobs", "new", 40).await;
    complete_all(c, "jobs", &recent).await;
    assert_eq!(age(&db.pool, "jobs", "old-%", "2 hours").await, 1200);
    // not completed: pending, planned, active, dead, all last run long ago
    let active = leased(c, "jobs", "act", 6).await;
    c.push_many(
        "jobs",
        &(0..7)
            .map(|i| NewDoc::new(format!("pnd-{i}")))
            .chain(
                (0..8).map(|i| {
                    NewDoc::new(format!("pln-{i}")).at(fetchq_core::Schedule::after(HOUR))
                }),
            )
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    c.kill(&active[0].lease, None).await.unwrap();
    for like in ["act-%", "pnd-%", "pln-%"] {
        age(&db.pool, "jobs", like, "3 hours").await;
    }
    let before = rows(&db.pool, "jobs").await;
    assert_eq!(before, 1200 + 40 + 6 + 7 + 8);

    // three passes of 500: 500, 500, 200, then nothing
    let mut deleted = Vec::new();
    for _ in 0..4 {
        c.mnt_run("jobs", 500).await.unwrap();
        let now = rows(&db.pool, "jobs").await;
        deleted.push(before - deleted.iter().sum::<i64>() - now);
        assert_counters_exact(c, "jobs").await;
    }
    assert_eq!(deleted, [500, 500, 200, 0]);
    let left: Vec<(String, i32)> = sqlx::query_as(
        "SELECT subject::text, status FROM fetchq_data.jobs__docs WHERE subject LIKE 'old-%'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    // the recent ones and every document not completed are untouched
    let by_prefix: BTreeMap<String, (i32, i64)> = sqlx::query(
        "SELECT split_part(subject, '-', 1), max(status), count(*) FROM fetchq_data.jobs__docs GROUP BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect();
    assert_eq!(by_prefix["new"], (3, 40));
    assert_eq!(by_prefix["act"], (2, 6));
    assert_eq!(by_prefix["pnd"], (1, 7));
    assert_eq!(by_prefix["pln"], (0, 8));
    assert_eq!(
        c.get("jobs", &active[0].subject).await.unwrap().status,
        Status::Dead
    );
    let counters = c.metric_get_common("jobs").await.unwrap();
    assert_eq!(counters.processed, 1241, "completions still count");
    assert_eq!(counters.completed, 40);

    // a deleted subject is admitted again
    assert!(c.push("jobs", &NewDoc::new("old-00000")).await.unwrap());
    assert!(!c.push("jobs", &NewDoc::new("new-00000")).await.unwrap());

    // the job runner (fetchq.mnt) runs the same step
    age(&db.pool, "jobs", "new-%", "61 minutes").await;
    c.mnt().await.unwrap();
    assert_eq!(c.metric_compute("jobs").await.unwrap().completed, 0);
    assert_counters_exact(c, "jobs").await;
}

#[tokio::test]
async fn concurrent_cleaners_delete_each_document_once() {
    let db = TestDb::with_pool_size(8).await;
    let c = &db.client;
    c.queue_create("jobs").await.unwrap();
    c.queue_set_completed_retention("jobs", Retention::After(Duration::from_secs(60)))
        .await
        .unwrap();
    let docs = leased(c, "jobs", "d", 3000).await;
    complete_all(c, "jobs", &docs).await;
    age(&db.pool, "jobs", "d-%", "2 minutes").await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut total = 0;
                loop {
                    let n = c.mnt_drop_completed("jobs", 100).await.unwrap();
                    if n == 0 {
                        break total;
                    }
                    total += n;
                }
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    // a cleaner may stop early on a batch the others held (SKIP LOCKED)
    total += c.mnt_drop_completed("jobs", 5000).await.unwrap();
    assert_eq!(total, 3000);
    assert_eq!(rows(&db.pool, "jobs").await, 0);
    assert_counters_exact(c, "jobs").await;
}

#[tokio::test]
async fn a_bad_retention_is_refused_and_changes_nothing() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("jobs").await.unwrap();
    c.queue_set_completed_retention("jobs", Retention::After(HOUR))
        .await
        .unwrap();
    for bad in [
        "-1 hour",
        "-1 second",
        "1 day -2 hours",
        "-1 month 40 days",
        "-1 microsecond",
    ] {
        let err = sqlx::query("SELECT fetchq.queue_set_completed_retention('jobs', $1::interval)")
            .bind(bad)
            .execute(&db.pool)
            .await
            .unwrap_err();
        let code = err
            .as_database_error()
            .unwrap()
            .code()
            .unwrap()
            .into_owned();
        assert_eq!(code, "FQ004", "{bad}: {err}");
        assert!(err.to_string().contains("must not be negative"), "{err}");
    }
    // through the client: typed errors
    let err = sqlx::query("SELECT fetchq.queue_set_completed_retention('jobs', '-5 minutes')")
        .execute(&db.pool)
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(matches!(
        c.queue_set_completed_retention("jobs", Retention::After(Duration::from_nanos(10)))
            .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.queue_set_completed_retention("jobs", Retention::After(Duration::MAX))
            .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.queue_set_completed_retention("nope", Retention::AtOnce)
            .await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.queue_set_completed_retention("No-Pe", Retention::AtOnce)
            .await,
        Err(Error::InvalidQueueName { .. })
    ));
    assert!(matches!(
        c.mnt_drop_completed("jobs", 0).await,
        Err(Error::InvalidArgument { .. })
    ));
    for too_long in ["101 years", "100 years 1 second", "1000000 years"] {
        let err = sqlx::query("SELECT fetchq.queue_set_completed_retention('jobs', $1::interval)")
            .bind(too_long)
            .execute(&db.pool)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("at most 100 years"),
            "{too_long}: {err}"
        );
    }
    assert!(matches!(
        c.queue_set_completed_retention(
            "jobs",
            Retention::After(Duration::from_secs(200 * 366 * 86_400))
        )
        .await,
        Err(Error::InvalidArgument { .. })
    ));
    // nothing changed
    assert_eq!(
        c.queue_status("jobs").await.unwrap().completed_retention,
        Retention::After(HOUR)
    );
    assert!(has_completed_index(&db.pool, "jobs").await);
    // a negative value written by hand is refused by the table
    let err =
        sqlx::query("UPDATE fetchq.queues SET completed_retention = '-1 day' WHERE name = 'jobs'")
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert_eq!(err.as_database_error().unwrap().code().unwrap(), "23514");
    // a value past the limit written by hand does not break maintenance
    sqlx::query(
        "UPDATE fetchq.queues SET completed_retention = '1000000 years' WHERE name = 'jobs'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let docs = leased(c, "jobs", "d", 3).await;
    complete_all(c, "jobs", &docs).await;
    c.mnt_run("jobs", 500).await.unwrap();
    assert_eq!(c.mnt_drop_completed("jobs", 500).await.unwrap(), 0);
    let run = c.mnt_job_run(Duration::from_secs(60), 100).await.unwrap();
    assert!(run.success && run.processed > 0, "{run:?}");
    assert_eq!(rows(&db.pool, "jobs").await, 3);
    // odd but not negative intervals are taken as they are
    sqlx::query("SELECT fetchq.queue_set_completed_retention('jobs', '1 month 2 days 03:00:00')")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        c.queue_status("jobs").await.unwrap().completed_retention,
        Retention::After(Duration::from_secs((32 * 24 + 3) * 3600))
    );
}

#[tokio::test]
async fn dropping_a_queue_with_a_retention_and_recreating_it_keeps_again() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("mail").await.unwrap();
    c.queue_set_completed_retention("mail", Retention::After(HOUR))
        .await
        .unwrap();
    let docs = leased(c, "mail", "m", 5).await;
    complete_all(c, "mail", &docs).await;
    assert!(c.queue_drop("mail").await.unwrap());
    assert!(c.queue_create("mail").await.unwrap());
    assert_eq!(
        c.queue_status("mail").await.unwrap().completed_retention,
        Retention::Keep
    );
    assert!(!has_completed_index(&db.pool, "mail").await);
    let docs = leased(c, "mail", "m", 5).await;
    complete_all(c, "mail", &docs).await;
    c.mnt().await.unwrap();
    assert_eq!(rows(&db.pool, "mail").await, 5);
    assert_counters_exact(c, "mail").await;
}

#[tokio::test]
async fn a_queue_from_schema_19_keeps_working_and_keeps_by_default() {
    let db = TestDb::new().await;
    let pool = db.database_at(19).await;
    // the queue and its documents, written by schema 19's functions
    sqlx::raw_sql(
        "SELECT fetchq.queue_create('old');
         SELECT fetchq.doc_push('old', 'a'); SELECT fetchq.doc_push('old', 'b');
         SELECT fetchq.doc_push('old', 'c');
         SELECT fetchq.doc_pick('old', 0, 2, '5 minutes');
         SELECT fetchq.doc_complete('old', 'a');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let c = Client::new(pool.clone());
    let report = c.migrate().await.unwrap();
    assert_eq!(
        (report.from_version, report.to_version),
        (19, fetchq_core::latest_schema_version())
    );

    let q = c.queue_status("old").await.unwrap();
    assert_eq!(q.completed_retention, Retention::Keep);
    assert_eq!(c.get("old", "a").await.unwrap().status, Status::Completed);
    // keeps: b completes and stays, a is not admitted again
    let n: i32 = sqlx::query_scalar("SELECT affected_rows FROM fetchq.doc_complete('old', 'b')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(!c.push("old", &NewDoc::new("a")).await.unwrap());
    c.mnt().await.unwrap();
    assert_eq!(rows(&pool, "old").await, 3);
    assert_counters_exact(&c, "old").await;

    // the new setting works on the old queue
    c.queue_set_completed_retention("old", Retention::AtOnce)
        .await
        .unwrap();
    let doc = c.pick("old", &PickOptions::new()).await.unwrap().remove(0);
    assert_eq!(doc.subject, "c");
    assert_eq!(
        c.complete_many("old", &[(doc.lease.clone(), None)])
            .await
            .unwrap(),
        ["c"]
    );
    // the two completed under schema 19 and before the change go with maintenance
    c.mnt().await.unwrap();
    assert_eq!(rows(&pool, "old").await, 0);
    assert_counters_exact(&c, "old").await;
    assert!(c.push("old", &NewDoc::new("a")).await.unwrap());
    pool.close().await;
}

/// The statement of `template` for `queue` (as the client builds it).
fn per_queue_statement(template: &str, queue: &str) -> String {
    template.replace("{docs}", &format!("\"fetchq_data\".\"{queue}__docs\""))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Not a check (the host is noisy): prints what a completion costs today
/// (the schema 19 statement), with schema 20 keeping, and deleting at once.
/// Server-side execution time of batches of 100 from EXPLAIN ANALYZE, and the
/// wall time of single completions through `fetchq.doc_complete`. Run with
/// `cargo test -p fetchq-core --test retention completion_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn completion_cost() {
    let db = TestDb::new().await;
    let c = &db.client;
    const DOCS: usize = 20_000;
    const BATCH: usize = 100;
    let old = include_str!("sql/complete_many_schema19.sql");
    let new = include_str!("../sql/per_queue/complete_many.sql");
    let modes = [
        ("before", old, Retention::Keep),
        ("keep", new, Retention::Keep),
        ("at_once", new, Retention::AtOnce),
    ];
    let mut leases = Vec::new();
    for (name, _, retention) in modes {
        c.queue_create(name).await.unwrap();
        c.queue_set_completed_retention(name, retention)
            .await
            .unwrap();
        let docs: Vec<NewDoc> = (0..DOCS)
            .map(|i| {
                NewDoc::new(format!("s{i:06}"))
                    .payload(json!({"to": "someone@example.com", "i": i}))
            })
            .collect();
        for chunk in docs.chunks(5000) {
            c.push_many(name, chunk).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < DOCS {
            got.extend(
                c.pick(name, &PickOptions::new().limit(1000).lease(HOUR))
                    .await
                    .unwrap(),
            );
        }
        leases.push(got);
    }
    sqlx::raw_sql(include_str!("sql/doc_complete_schema19.sql"))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut batch_ms: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut single_us: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let batches = (DOCS / 2) / BATCH;
    // interleaved rounds, so noise on the host hits every mode alike
    for round in 0..batches {
        for (m, (name, template, _)) in modes.iter().enumerate() {
            let chunk = &leases[m][round * BATCH..(round + 1) * BATCH];
            let subjects: Vec<String> = chunk.iter().map(|d| d.subject.clone()).collect();
            let tokens: Vec<uuid::Uuid> = chunk.iter().map(|d| d.lease.token).collect();
            let payloads: Vec<Option<serde_json::Value>> = vec![None; BATCH];
            let sql = format!(
                "EXPLAIN (ANALYZE, FORMAT JSON) {}",
                per_queue_statement(template, name)
            );
            let plan: serde_json::Value = sqlx::query_scalar(&sql)
                .bind(*name)
                .bind(&subjects)
                .bind(&tokens)
                .bind(&payloads)
                .fetch_one(&db.pool)
                .await
                .unwrap();
            batch_ms[m].push(plan[0]["Execution Time"].as_f64().unwrap());
        }
    }
    let (singles, from) = (2_000, DOCS / 2);
    for i in 0..singles {
        for (m, (name, _, _)) in modes.iter().enumerate() {
            let lease = &leases[m][from + i].lease;
            let t = std::time::Instant::now();
            if *name == "before" {
                let n: i32 = sqlx::query_scalar(
                    "SELECT affected_rows FROM fetchq.doc_complete_schema19($1, $2, NULL, $3)",
                )
                .bind(*name)
                .bind(&lease.subject)
                .bind(lease.token)
                .fetch_one(&db.pool)
                .await
                .unwrap();
                assert_eq!(n, 1);
            } else {
                c.complete(lease, None).await.unwrap();
            }
            single_us[m].push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    for (m, (name, _, _)) in modes.iter().enumerate() {
        let ms = &batch_ms[m];
        println!(
            "{name:8} complete_many of {BATCH}: median {:.3} ms, mean {:.3} ms over {} batches; \
             single complete: median {:.0} us over {singles}",
            median(ms.clone()),
            ms.iter().sum::<f64>() / ms.len() as f64,
            ms.len(),
            median(single_us[m].clone()),
        );
    }
    for (name, _, _) in modes {
        let size: i64 = sqlx::query_scalar(
            "SELECT pg_total_relation_size(format('fetchq_data.%I', $1 || '__docs'))",
        )
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        println!("{name:8} docs table and indexes: {} kB", size / 1024);
        assert_counters_exact(c, name).await;
    }
}

#[tokio::test]
async fn a_queue_dropped_while_it_is_cleaned_waits_and_then_is_gone() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("jobs").await.unwrap();
    // completed while it kept them, then at once: maintenance deletes them
    let docs = leased(c, "jobs", "d", 30).await;
    complete_all(c, "jobs", &docs).await;
    c.queue_set_completed_retention("jobs", Retention::AtOnce)
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let n: i32 =
        sqlx::query_scalar("SELECT affected_rows FROM fetchq.mnt_drop_completed('jobs', 10)")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(n, 10);
    let dropper = {
        let c = c.clone();
        tokio::spawn(async move { c.queue_drop("jobs").await })
    };
    // the drop waits for the cleaning transaction (no time limit: poll the
    // server until it shows the drop waiting on a lock)
    until_waiting_on_a_lock(
        &db,
        "queue_drop",
        &dropper,
        "the drop did not wait for the cleaning",
    )
    .await;
    tx.commit().await.unwrap();
    assert!(dropper.await.unwrap().unwrap());
    assert!(matches!(
        c.mnt_drop_completed("jobs", 10).await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.queue_set_completed_retention("jobs", Retention::Keep)
            .await,
        Err(Error::QueueNotFound { .. })
    ));
}

#[tokio::test]
async fn cleaning_a_queue_being_dropped_waits_and_says_it_is_gone() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("jobs").await.unwrap();
    let docs = leased(c, "jobs", "d", 5).await;
    complete_all(c, "jobs", &docs).await;
    c.queue_set_completed_retention("jobs", Retention::AtOnce)
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let dropped: bool = sqlx::query_scalar("SELECT was_dropped FROM fetchq.queue_drop('jobs')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(dropped);
    let cleaner = {
        let c = c.clone();
        tokio::spawn(async move { c.mnt_drop_completed("jobs", 10).await })
    };
    until_waiting_on_a_lock(
        &db,
        "mnt_drop_completed",
        &cleaner,
        "the cleaning did not wait for the drop",
    )
    .await;
    tx.commit().await.unwrap();
    let got = cleaner.await.unwrap();
    assert!(matches!(got, Err(Error::QueueNotFound { .. })), "{got:?}");
}

/// Puts `n` completed documents `<prefix>-<i>` into `queue` straight away
/// (one INSERT; the counters are repaired after), completed `age` ago and
/// `i` milliseconds before (so `<prefix>-<n>` is the oldest).
async fn completed_backlog(c: &Client, queue: &str, prefix: &str, n: i64, age: &str) {
    sqlx::query(&format!(
        "INSERT INTO fetchq_data.{queue}__docs (subject, status, iterations, last_iteration, next_iteration)
         SELECT $1 || '-' || i, 3, 1, now() - $2::interval - make_interval(secs => i * 0.001), '2970-01-01'
         FROM generate_series(1, $3::bigint) AS i"
    ))
    .bind(prefix)
    .bind(age)
    .bind(n)
    .execute(c.pool())
    .await
    .unwrap();
    sqlx::query("SELECT fetchq.metric_reset($1)")
        .bind(queue)
        .execute(c.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn cleaning_reads_the_completed_index_not_the_table() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("big").await.unwrap();
    let pending: Vec<NewDoc> = (0..20_000).map(|i| NewDoc::new(format!("p{i}"))).collect();
    for chunk in pending.chunks(5000) {
        c.push_many("big", chunk).await.unwrap();
    }
    completed_backlog(c, "big", "recent", 5000, "1 minute").await;
    completed_backlog(c, "big", "old", 1000, "2 hours").await;
    c.queue_set_completed_retention("big", Retention::After(HOUR))
        .await
        .unwrap();
    sqlx::raw_sql("ANALYZE fetchq_data.big__docs")
        .execute(&db.pool)
        .await
        .unwrap();
    // the scan counts of a new connection (a backend reports its counts
    // lazily, so an older one's may still hold earlier statements'): the
    // batch finds its rows through indexes, whatever else the table holds
    let fresh = db.pool_on(&db.name, 1).await;
    let mut tx = fresh.begin().await.unwrap();
    let n: i32 =
        sqlx::query_scalar("SELECT affected_rows FROM fetchq.mnt_drop_completed('big', 500)")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(n, 500);
    let (seq, idx, fetched): (i64, i64, i64) = sqlx::query_as(
        "SELECT seq_scan, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
         WHERE schemaname = 'fetchq_data' AND relname = 'big__docs'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    fresh.close().await;
    assert_eq!(seq, 0, "the cleaning scanned the whole table");
    assert!(idx > 0);
    // 500 rows found through the completed index and 500 deleted through the
    // primary key, not every completed document (6,000 of them)
    assert!(fetched <= 1200, "{fetched} rows read through indexes");
    // the oldest went first; the rest follow, the recent ones stay
    let left_old: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fetchq_data.big__docs WHERE subject LIKE 'old-%'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(left_old, 500);
    let oldest_left: i64 = sqlx::query_scalar(
        "SELECT max(split_part(subject, '-', 2)::bigint) FROM fetchq_data.big__docs WHERE subject LIKE 'old-%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        oldest_left, 500,
        "old-1000 (the oldest) .. old-501 went first"
    );
    assert_eq!(c.mnt_drop_completed("big", 5000).await.unwrap(), 500);
    assert_eq!(c.mnt_drop_completed("big", 5000).await.unwrap(), 0);
    assert_eq!(rows(&db.pool, "big").await, 25_000);
    assert_counters_exact(c, "big").await;
}

/// Not a check: how long one cleaning batch takes in a big backlog. Run with
/// `cargo test -p fetchq-core --test retention cleaning_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn cleaning_cost() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("big").await.unwrap();
    const BACKLOG: i64 = 300_000;
    completed_backlog(c, "big", "old", BACKLOG, "2 days").await;
    let t = std::time::Instant::now();
    c.queue_set_completed_retention("big", Retention::After(Duration::from_secs(86_400)))
        .await
        .unwrap();
    println!(
        "index build over {BACKLOG} completed documents: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    sqlx::raw_sql("ANALYZE fetchq_data.big__docs")
        .execute(&db.pool)
        .await
        .unwrap();
    for limit in [500, 5000] {
        let mut ms = Vec::new();
        for _ in 0..10 {
            let t = std::time::Instant::now();
            assert_eq!(c.mnt_drop_completed("big", limit).await.unwrap(), limit);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "batch of {limit}: median {:.1} ms, max {:.1} ms",
            median(ms.clone()),
            ms.iter().cloned().fold(0.0, f64::max)
        );
    }
    assert_counters_exact(c, "big").await;
}

/// A subject deleted at completion and pushed again is a new document: the
/// leases of its earlier life (one lost, one that completed it) neither
/// complete, reschedule nor reject it, and only its holder's lease does.
/// `upsert` and `push` after the deletion insert it again, counted.
#[tokio::test]
async fn a_stale_lease_never_settles_the_re_pushed_subject() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("mail").await.unwrap();
    c.queue_set_completed_retention("mail", Retention::AtOnce)
        .await
        .unwrap();
    c.push("mail", &NewDoc::new("s")).await.unwrap();
    let pick = |limit| PickOptions::new().limit(limit);
    let lost = c.pick("mail", &pick(1)).await.unwrap().remove(0);
    // given back (the first worker's lease is gone), then picked and completed
    assert_eq!(
        c.release("mail", std::slice::from_ref(&lost.lease))
            .await
            .unwrap()
            .len(),
        1
    );
    let done = c.pick("mail", &pick(1)).await.unwrap().remove(0);
    c.complete(&done.lease, None).await.unwrap();
    assert_eq!(rows(&db.pool, "mail").await, 0);
    assert_counters_exact(c, "mail").await;
    // the subject is admitted again, and picked by a third worker
    assert!(c.push("mail", &NewDoc::new("s")).await.unwrap());
    let live = c.pick("mail", &pick(1)).await.unwrap().remove(0);
    assert_eq!(live.subject, "s");
    for stale in [&lost.lease, &done.lease] {
        assert_ne!(stale.token, live.lease.token);
        assert!(matches!(
            c.complete(stale, None).await,
            Err(Error::LeaseLost { .. })
        ));
        assert!(
            c.complete_many("mail", &[(stale.clone(), None)])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            c.reschedule(stale, fetchq_core::Schedule::Now, None)
                .await
                .is_err()
        );
        assert!(c.reject(stale, "stale", None, None).await.is_err());
        let n: i32 = sqlx::query_scalar(
            "SELECT affected_rows FROM fetchq.doc_complete('mail', 's', NULL, $1)",
        )
        .bind(stale.token)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(n, 0);
    }
    let state = c.get("mail", "s").await.unwrap();
    assert_eq!((state.status, state.attempts), (Status::Active, 1));
    assert_counters_exact(c, "mail").await;
    // its holder completes it: deleted again
    assert_eq!(
        c.complete_many("mail", &[(live.lease.clone(), None)])
            .await
            .unwrap(),
        vec!["s".to_owned()]
    );
    assert_eq!(rows(&db.pool, "mail").await, 0);
    // an upsert after the deletion inserts it, as a push would
    assert!(matches!(
        c.upsert("mail", &NewDoc::new("s")).await.unwrap(),
        fetchq_core::Upserted::Inserted
    ));
    let appended = c.append("mail", &json!({"to": "ada"}), 0, 0).await.unwrap();
    assert_eq!(rows(&db.pool, "mail").await, 2);
    for doc in c.pick("mail", &pick(10)).await.unwrap() {
        c.complete(&doc.lease, None).await.unwrap();
    }
    assert!(matches!(
        c.get("mail", &appended).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(rows(&db.pool, "mail").await, 0);
    assert_counters_exact(c, "mail").await;
}

/// Documents leased under one setting and completed under another: keep,
/// then at-once, then after an hour, then keep again, with a cleaner pass
/// at each step. Each completion follows the setting at its own time, and
/// the counters equal real counts throughout.
#[tokio::test]
async fn switching_the_retention_while_workers_drain_keeps_counters_exact() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs = leased(c, "q", "d", 400).await;
    let (a, rest) = docs.split_at(100);
    let (b, rest) = rest.split_at(100);
    let (d, e) = rest.split_at(100);
    let complete = |part: &'static str, chunk: Vec<fetchq_core::Document>| async move {
        let items: Vec<_> = chunk.iter().map(|x| (x.lease.clone(), None)).collect();
        let (first, second) = items.split_at(items.len() / 2);
        // half through the client's statement, half through the SQL function
        assert_eq!(
            c.complete_many("q", first).await.unwrap().len(),
            first.len(),
            "{part}"
        );
        for (lease, _) in second {
            let n: i32 = sqlx::query_scalar(
                "SELECT affected_rows FROM fetchq.doc_complete('q', $1, NULL, $2)",
            )
            .bind(&lease.subject)
            .bind(lease.token)
            .fetch_one(c.pool())
            .await
            .unwrap();
            assert_eq!(n, 1, "{part}");
        }
    };
    // keep: 100 completed stay
    complete("keep", a.to_vec()).await;
    assert_eq!(c.mnt_drop_completed("q", 500).await.unwrap(), 0);
    assert_eq!(rows(&db.pool, "q").await, 400);
    assert_counters_exact(c, "q").await;
    // at once: the next 100 go at completion, the kept ones go at the next pass
    c.queue_set_completed_retention("q", Retention::AtOnce)
        .await
        .unwrap();
    complete("at-once", b.to_vec()).await;
    assert_eq!(rows(&db.pool, "q").await, 300);
    assert_counters_exact(c, "q").await;
    assert_eq!(c.mnt_drop_completed("q", 500).await.unwrap(), 100);
    assert_eq!(rows(&db.pool, "q").await, 200);
    assert_counters_exact(c, "q").await;
    // after an hour: completed documents stay until they are an hour old
    c.queue_set_completed_retention("q", Retention::After(HOUR))
        .await
        .unwrap();
    complete("after", d.to_vec()).await;
    assert_eq!(c.mnt_drop_completed("q", 500).await.unwrap(), 0);
    assert_eq!(rows(&db.pool, "q").await, 200);
    sqlx::query(
        "UPDATE fetchq_data.q__docs SET last_iteration = now() - interval '2 hours'
         WHERE status = 3 AND subject < 'd-00250'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(c.mnt_run("q", 500).await.unwrap().killed, 0);
    assert_eq!(rows(&db.pool, "q").await, 150);
    assert_counters_exact(c, "q").await;
    // keep again: the index goes, the rest are completed and kept
    c.queue_set_completed_retention("q", Retention::Keep)
        .await
        .unwrap();
    assert!(!has_completed_index(&db.pool, "q").await);
    complete("keep again", e.to_vec()).await;
    assert_eq!(c.mnt_drop_completed("q", 500).await.unwrap(), 0);
    sqlx::query("UPDATE fetchq_data.q__docs SET last_iteration = now() - interval '2 hours'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(c.mnt_drop_completed("q", 500).await.unwrap(), 0);
    assert_eq!(rows(&db.pool, "q").await, 150);
    assert_eq!(count_status(&db.pool, "q", 3).await, 150);
    assert_counters_exact(c, "q").await;
}

async fn count_status(pool: &PgPool, queue: &str, status: i32) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM fetchq_data.{queue}__docs WHERE status = $1"
    ))
    .bind(status)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Setting a retention builds the cleaner's index under a lock that makes
/// concurrent pushes wait, not fail: a push in a transaction still open when
/// the setting starts holds it back, and pushes during the build wait for it;
/// every push lands and is counted.
#[tokio::test]
async fn pushes_wait_for_the_index_build_and_all_land() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..20_000)
        .map(|i| NewDoc::new(format!("old-{i:05}")))
        .collect();
    for chunk in docs.chunks(5000) {
        c.push_many("q", chunk).await.unwrap();
    }
    // a writer's transaction, open
    let mut tx = db.pool.begin().await.unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("in-tx"))
        .await
        .unwrap();
    let setter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.queue_set_completed_retention("q", Retention::After(HOUR))
                .await
        })
    };
    // pushes started meanwhile
    let pushers: Vec<_> = (0..4)
        .map(|p| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    c.push("q", &NewDoc::new(format!("new-{p}-{i:02}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!setter.is_finished(), "the build waits for the open writer");
    tx.commit().await.unwrap();
    setter.await.unwrap().unwrap();
    for p in pushers {
        p.await.unwrap();
    }
    assert!(has_completed_index(&db.pool, "q").await);
    assert_eq!(rows(&db.pool, "q").await, 20_000 + 1 + 100);
    assert_counters_exact(c, "q").await;
}

/// Polls the server (no time limit) until a statement containing `call`
/// waits on a lock; fails if `task`, which runs it, ended first.
async fn until_waiting_on_a_lock<T>(
    db: &TestDb,
    call: &str,
    task: &tokio::task::JoinHandle<T>,
    what: &str,
) {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND wait_event_type = 'Lock' AND strpos(query, $1) > 0",
        )
        .bind(call)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(!task.is_finished(), "{what}");
        tokio::task::yield_now().await;
    }
}
