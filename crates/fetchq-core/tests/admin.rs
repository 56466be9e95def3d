//! Browsing a queue (doc_list, log_list, metric_history) and the operator's
//! actions (play, force kill/reschedule/drop, bulk), with exact counters.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use fetchq_core::{BulkAction, Client, DocFilter, Error, NewDoc, PickOptions, Schedule, Status};
use fetchq_testing::TestDb;
use serde_json::json;
use sqlx::Row;
use sqlx::postgres::PgListener;

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    db
}

/// After a pack, the counters equal a real count: per status and per version.
async fn assert_counters_exact(db: &TestDb, queue: &str) {
    let c = &db.client;
    c.metric_log_pack().await.unwrap();
    let truth = c.metric_compute(queue).await.unwrap();
    let counted = c.metric_get_common(queue).await.unwrap().status_counts();
    assert_eq!(counted, truth, "status counters of {queue} drifted");
    let rows = sqlx::query(&format!(
        "SELECT version, count(*) FROM fetchq_data.{queue}__docs GROUP BY version"
    ))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let real: BTreeMap<i32, i64> = rows
        .iter()
        .map(|r| (r.get::<i32, _>(0), r.get::<i64, _>(1)))
        .collect();
    let mut stored = BTreeMap::new();
    for m in c.metric_list(queue).await.unwrap() {
        if let Some(v) = m
            .metric
            .strip_prefix('v')
            .and_then(|v| v.parse::<i32>().ok())
            && m.value != 0
        {
            stored.insert(v, m.value);
        }
    }
    assert_eq!(stored, real, "version counters of {queue} drifted");
}

async fn push_n(c: &Client, queue: &str, docs: Vec<NewDoc>) {
    for chunk in docs.chunks(5000) {
        c.push_many(queue, chunk).await.unwrap();
    }
}

async fn list_all(c: &Client, queue: &str, filter: &DocFilter, limit: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c
            .doc_list(queue, filter, after.as_deref(), limit)
            .await
            .unwrap();
        assert!(page.len() <= limit as usize);
        out.extend(page.iter().map(|d| d.subject.clone()));
        match page.last() {
            Some(last) if page.len() == limit as usize => after = Some(last.subject.clone()),
            _ => return out,
        }
    }
}

/// A document `subject` of its own `version` in `status` (a pick of that
/// version takes exactly it). Returns the lease when active.
async fn make(
    c: &Client,
    subject: &str,
    version: i32,
    status: Status,
) -> Option<fetchq_core::Lease> {
    let later = Schedule::after(Duration::from_secs(3600));
    let doc = NewDoc::new(subject).version(version);
    match status {
        Status::Planned => {
            c.push("q", &doc.at(later)).await.unwrap();
            return None;
        }
        Status::Pending => {
            c.push("q", &doc).await.unwrap();
            return None;
        }
        _ => {}
    }
    c.push("q", &doc).await.unwrap();
    let picked = c
        .pick("q", &PickOptions::new().version(version))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(picked.subject, subject);
    match status {
        Status::Active => return Some(picked.lease),
        Status::Completed => c.complete(&picked.lease, None).await.unwrap(),
        Status::Dead => c.kill(&picked.lease, None).await.unwrap(),
        _ => unreachable!(),
    }
    None
}

const STATUSES: [Status; 5] = [
    Status::Planned,
    Status::Pending,
    Status::Active,
    Status::Completed,
    Status::Dead,
];

#[tokio::test]
async fn paging_through_2500_documents_returns_each_once_in_order() {
    let db = setup().await;
    let c = &db.client;
    push_n(
        c,
        "q",
        (0..2500)
            .map(|i| NewDoc::new(format!("doc-{i:05}")))
            .collect(),
    )
    .await;
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let page = c
            .doc_list("q", &DocFilter::new(), after.as_deref(), 1000)
            .await
            .unwrap();
        pages.push(page.len());
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().subject.clone());
        all.extend(page.into_iter().map(|d| d.subject));
    }
    assert_eq!(pages, vec![1000, 1000, 500, 0]);
    let expected: Vec<String> = (0..2500).map(|i| format!("doc-{i:05}")).collect();
    assert_eq!(all, expected);
    // a page carries whole documents
    let first = &c.doc_list("q", &DocFilter::new(), None, 1).await.unwrap()[0];
    assert_eq!(first.subject, "doc-00000");
    assert_eq!(first.status, Status::Pending);
    assert_eq!(first.payload, json!({}));
}

#[tokio::test]
async fn every_filter_combination_matches_exactly() {
    let db = setup().await;
    let c = &db.client;
    // subjects under three prefixes, versions 0..3, every status
    let mut truth: Vec<(String, i32, Status)> = Vec::new();
    let mut version = 0;
    for (i, status) in STATUSES.iter().cycle().take(30).enumerate() {
        let prefix = ["a/", "ab/", "b/"][i % 3];
        let subject = format!("{prefix}{i:02}");
        version += 1;
        make(c, &subject, version, *status).await;
        truth.push((subject, version % 3, *status));
    }
    // versions were unique for the picks; fold them into 0..3 for the filters
    for (subject, v, _) in &truth {
        sqlx::query("UPDATE fetchq_data.q__docs SET version = $2 WHERE subject = $1")
            .bind(subject)
            .bind(v)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    truth.sort_by(|a, b| a.0.cmp(&b.0));
    let statuses: Vec<Option<Status>> = std::iter::once(None)
        .chain(STATUSES.iter().copied().map(Some))
        .collect();
    for status in &statuses {
        for version in [None, Some(0), Some(1), Some(2), Some(7)] {
            for prefix in [
                None,
                Some("a"),
                Some("a/"),
                Some("ab/"),
                Some("b/"),
                Some("c"),
            ] {
                let mut filter = DocFilter::new();
                filter.status = *status;
                filter.version = version;
                filter.subject_prefix = prefix.map(str::to_owned);
                let expected: Vec<String> = truth
                    .iter()
                    .filter(|(s, v, st)| {
                        status.is_none_or(|x| x == *st)
                            && version.is_none_or(|x| x == *v)
                            && prefix.is_none_or(|p| s.starts_with(p))
                    })
                    .map(|(s, _, _)| s.clone())
                    .collect();
                for limit in [1, 3, 1000] {
                    assert_eq!(
                        list_all(c, "q", &filter, limit).await,
                        expected,
                        "{filter:?} limit {limit}"
                    );
                }
            }
        }
    }
}

const LITERAL_SUBJECTS: [&str; 16] = [
    "50%_off",
    "50%x",
    "50a_off",
    "a_b",
    "axb",
    "back\\slash",
    "backxslash",
    "back\\\\double",
    "it's",
    "it\"s",
    "its",
    "日本語/一",
    "日本/二",
    "émile",
    "emile",
    "\u{10FFFF}max",
];

#[tokio::test]
async fn prefixes_match_literally() {
    let db = setup().await;
    let c = &db.client;
    push_n(
        c,
        "q",
        LITERAL_SUBJECTS.iter().map(|s| NewDoc::new(*s)).collect(),
    )
    .await;
    for prefix in [
        "50%",
        "50%_",
        "a_",
        "%",
        "_",
        "back\\",
        "back\\\\",
        "it'",
        "it\"",
        "日本語",
        "日本",
        "é",
        "e",
        "\u{10FFFF}",
        "\\",
        "'",
        "x'; DROP TABLE q; --",
    ] {
        let mut expected: Vec<String> = LITERAL_SUBJECTS
            .iter()
            .filter(|s| s.starts_with(prefix))
            .map(|s| (*s).to_owned())
            .collect();
        expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut got = list_all(c, "q", &DocFilter::new().subject_prefix(prefix), 2).await;
        got.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(got, expected, "prefix {prefix:?}");
    }
    // a bulk over a literal prefix changes exactly those
    let n = c
        .bulk(
            "q",
            &DocFilter::new().subject_prefix("50%_"),
            BulkAction::Kill,
            1,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(c.get("q", "50%_off").await.unwrap().status, Status::Dead);
    assert_eq!(c.get("q", "50%x").await.unwrap().status, Status::Pending);
    assert_counters_exact(&db, "q").await;
}

#[tokio::test]
async fn every_action_from_every_status_keeps_counters_exact() {
    let db = setup().await;
    let c = &db.client;
    let past = Utc::now() - chrono::Duration::hours(1);
    let actions = [
        ("play", BulkAction::Play),
        ("kill", BulkAction::Kill),
        (
            "later",
            BulkAction::Reschedule(Schedule::after(Duration::from_secs(7200))),
        ),
        ("past", BulkAction::Reschedule(Schedule::at(past))),
        ("drop", BulkAction::Drop),
    ];
    let mut version = 0;
    for (name, action) in actions {
        for status in STATUSES {
            version += 1;
            let subject = format!("{name}-{status:?}");
            // attempts > 0 where the status allows, to see the reset
            make(c, &subject, version, status).await;
            match action {
                BulkAction::Play => c.play("q", &subject).await.unwrap(),
                BulkAction::Kill => c.force_kill("q", &subject).await.unwrap(),
                BulkAction::Reschedule(when) => {
                    c.force_reschedule("q", &subject, when).await.unwrap()
                }
                BulkAction::Drop => c.force_drop("q", &subject).await.unwrap(),
            }
            let after = c.get("q", &subject).await;
            match action {
                BulkAction::Drop => assert!(matches!(after, Err(Error::NotFound { .. }))),
                _ => {
                    let doc = after.unwrap();
                    let expected = match action {
                        BulkAction::Play => Status::Pending,
                        BulkAction::Kill => Status::Dead,
                        BulkAction::Reschedule(Schedule::At(_)) => Status::Pending,
                        _ => Status::Planned,
                    };
                    assert_eq!(doc.status, expected, "{subject}");
                    if !matches!(action, BulkAction::Kill) {
                        assert_eq!(doc.attempts, 0, "{subject}");
                    }
                    if matches!(action, BulkAction::Play) {
                        assert!(doc.next_iteration <= Utc::now() + chrono::Duration::seconds(5));
                    }
                }
            }
            assert_counters_exact(&db, "q").await;
        }
    }
    // a played document is picked at once; a dropped subject can be pushed again
    let picked = c.pick("q", &PickOptions::new().version(3)).await.unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0].subject, "play-Active");
    assert!(c.push("q", &NewDoc::new("drop-Dead")).await.unwrap());
    assert_counters_exact(&db, "q").await;
}

#[tokio::test]
async fn an_action_on_an_active_document_fences_out_its_worker() {
    let db = setup().await;
    let c = &db.client;
    for (i, action) in [
        BulkAction::Play,
        BulkAction::Kill,
        BulkAction::Reschedule(Schedule::now()),
        BulkAction::Drop,
    ]
    .into_iter()
    .enumerate()
    {
        let subject = format!("held-{i}");
        let version = i32::try_from(i).unwrap();
        let lease = make(c, &subject, version, Status::Active).await.unwrap();
        match action {
            BulkAction::Play => c.play("q", &subject).await.unwrap(),
            BulkAction::Kill => c.force_kill("q", &subject).await.unwrap(),
            BulkAction::Reschedule(w) => c.force_reschedule("q", &subject, w).await.unwrap(),
            BulkAction::Drop => c.force_drop("q", &subject).await.unwrap(),
        }
        let before = c.get("q", &subject).await.ok();
        for result in [
            c.complete(&lease, Some(&json!({"late": true}))).await,
            c.reschedule(&lease, Schedule::now(), None).await,
            c.kill(&lease, None).await,
            c.drop_doc(&lease).await,
        ] {
            assert!(
                matches!(result, Err(Error::LeaseLost { .. })),
                "{subject}: {result:?}"
            );
        }
        assert_eq!(c.get("q", &subject).await.ok(), before, "{subject}");
        assert_counters_exact(&db, "q").await;
    }
}

async fn next(l: &mut PgListener) -> String {
    tokio::time::timeout(Duration::from_secs(10), l.recv())
        .await
        .expect("no wake-up within 10 s")
        .unwrap()
        .payload()
        .to_owned()
}

#[tokio::test]
async fn play_and_reschedule_wake_listening_workers() {
    let db = setup().await;
    let c = &db.client;
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen("fetchq_pending").await.unwrap();
    let later = Schedule::after(Duration::from_secs(3600));
    c.push("q", &NewDoc::new("planned").at(later))
        .await
        .unwrap();
    assert_eq!(next(&mut listener).await, "q"); // the push's own
    c.play("q", "planned").await.unwrap();
    assert_eq!(next(&mut listener).await, "q");
    // a pending document played again moves no pending counter and still wakes
    c.play("q", "planned").await.unwrap();
    assert_eq!(next(&mut listener).await, "q");
    // a planned document brought forward wakes idle workers too
    c.force_reschedule("q", "planned", later).await.unwrap();
    assert_eq!(next(&mut listener).await, "q");
    c.bulk("q", &DocFilter::new(), BulkAction::Play, 10)
        .await
        .unwrap();
    assert_eq!(next(&mut listener).await, "q");
    // a kill wakes nobody
    c.force_kill("q", "planned").await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(quiet.is_err(), "a kill sent {quiet:?}");
}

#[tokio::test]
async fn bulk_over_25000_documents_changes_exactly_the_matching_ones() {
    let db = setup().await;
    let c = &db.client;
    push_n(
        c,
        "q",
        (0..25_000)
            .map(|i| {
                NewDoc::new(format!(
                    "{}/{i:05}",
                    if i % 2 == 0 { "even" } else { "odd" }
                ))
                .version(i % 3)
            })
            .collect(),
    )
    .await;
    // even subjects of version 1: i even and i % 3 == 1, i < 25000
    let expected = (0..25_000).filter(|i| i % 2 == 0 && i % 3 == 1).count() as u64;
    let filter = DocFilter::new().version(1).subject_prefix("even/");
    assert_eq!(
        c.bulk("q", &filter, BulkAction::Kill, 1000).await.unwrap(),
        expected
    );
    let dead = list_all(c, "q", &DocFilter::new().status(Status::Dead), 1000).await;
    assert_eq!(dead.len() as u64, expected);
    assert!(dead.iter().all(|s| s.starts_with("even/")));
    assert_counters_exact(&db, "q").await;

    // a play over documents that keep matching terminates
    let pending = 25_000 - expected;
    let filter = DocFilter::new().status(Status::Pending);
    assert_eq!(
        c.bulk("q", &filter, BulkAction::Play, 1000).await.unwrap(),
        pending
    );
    // the same with batches that end exactly at the last document
    assert_eq!(
        c.bulk(
            "q",
            &DocFilter::new().status(Status::Dead),
            BulkAction::Play,
            i32::try_from(expected).unwrap()
        )
        .await
        .unwrap(),
        expected
    );
    assert_counters_exact(&db, "q").await;

    // reschedule everything later, then drop one version
    assert_eq!(
        c.bulk(
            "q",
            &DocFilter::new(),
            BulkAction::Reschedule(Schedule::after(Duration::from_secs(600))),
            1000
        )
        .await
        .unwrap(),
        25_000
    );
    assert_eq!(c.metric_compute("q").await.unwrap().planned, 25_000);
    let v2 = (0..25_000).filter(|i| i % 3 == 2).count() as u64;
    assert_eq!(
        c.bulk("q", &DocFilter::new().version(2), BulkAction::Drop, 777)
            .await
            .unwrap(),
        v2
    );
    assert_counters_exact(&db, "q").await;
    let counters = c.metric_get_common("q").await.unwrap();
    assert_eq!(counters.dropped, i64::try_from(v2).unwrap());
    assert_eq!(counters.total, 25_000 - i64::try_from(v2).unwrap());
}

#[tokio::test]
async fn bulk_skips_a_row_another_transaction_holds_and_single_actions_wait() {
    let db = setup().await;
    let c = &db.client;
    push_n(
        c,
        "q",
        (0..50).map(|i| NewDoc::new(format!("d{i:02}"))).collect(),
    )
    .await;
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq_data.q__docs WHERE subject = 'd07' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let n = tokio::time::timeout(
        Duration::from_secs(60),
        c.bulk("q", &DocFilter::new(), BulkAction::Kill, 10),
    )
    .await
    .expect("bulk waited for the held row")
    .unwrap();
    assert_eq!(n, 49);
    assert_eq!(c.get("q", "d07").await.unwrap().status, Status::Pending);

    // a single action waits for the holder
    let client = c.clone();
    let kill = tokio::spawn(async move { client.force_kill("q", "d07").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!kill.is_finished());
    holder.commit().await.unwrap();
    kill.await.unwrap().unwrap();
    assert_eq!(c.get("q", "d07").await.unwrap().status, Status::Dead);
    assert_counters_exact(&db, "q").await;
}

#[tokio::test]
async fn hostile_input_is_refused_with_typed_errors() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("x")).await.unwrap();
    let all = DocFilter::new();
    for limit in [0, -1, 1001, 1_000_000_000, i32::MIN, i32::MAX] {
        assert!(
            matches!(
                c.doc_list("q", &all, None, limit).await,
                Err(Error::InvalidArgument { .. })
            ),
            "doc_list limit {limit}"
        );
        assert!(
            matches!(
                c.log_list("q", None, None, limit).await,
                Err(Error::InvalidArgument { .. })
            ),
            "log_list limit {limit}"
        );
    }
    for limit in [0, -1, 10_001, 1_000_000_000] {
        assert!(
            matches!(
                c.metric_history("q", Utc::now(), limit).await,
                Err(Error::InvalidArgument { .. })
            ),
            "metric_history limit {limit}"
        );
        assert!(
            matches!(
                c.bulk("q", &all, BulkAction::Kill, limit).await,
                Err(Error::InvalidArgument { .. })
            ),
            "bulk batch {limit}"
        );
    }
    // a NUL byte cannot be stored: refused, nothing changed
    let nul = DocFilter::new().subject_prefix("x\0");
    assert!(matches!(
        c.doc_list("q", &nul, None, 10).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.doc_list("q", &all, Some("a\0"), 10).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.bulk("q", &nul, BulkAction::Drop, 10).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.log_list("q", Some("x\0"), None, 10).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.force_drop("q", "x\0").await,
        Err(Error::InvalidSubject { .. })
    ));
    // a 10 kB prefix matches nothing; a 10 kB subject is no document
    let long = "x".repeat(10_000);
    assert!(
        c.doc_list(
            "q",
            &DocFilter::new().subject_prefix(long.clone()),
            None,
            10
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        c.bulk(
            "q",
            &DocFilter::new().subject_prefix(long.clone()),
            BulkAction::Drop,
            10
        )
        .await
        .unwrap(),
        0
    );
    assert!(
        c.doc_list("q", &all, Some(&long), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        c.play("q", &long).await,
        Err(Error::InvalidSubject { .. })
    ));
    // unknown subjects, queues and bad names
    assert!(matches!(
        c.play("q", "nobody").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.force_reschedule("q", "nobody", Schedule::now()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.force_kill("q", "nobody").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.force_drop("q", "nobody").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.play("nope", "x").await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.doc_list("nope", &all, None, 10).await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.log_list("nope", None, None, 10).await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.metric_history("nope", Utc::now(), 10).await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.bulk("nope", &all, BulkAction::Play, 10).await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.doc_list("Q; DROP", &all, None, 10).await,
        Err(Error::InvalidQueueName { .. })
    ));
    // bad statuses and versions through SQL
    for (sql, what) in [
        ("SELECT * FROM fetchq.doc_list('q', 9)", "status"),
        ("SELECT * FROM fetchq.doc_list('q', NULL, -1)", "version"),
        (
            "SELECT * FROM fetchq.doc_bulk('q', NULL, NULL, NULL, 'explode')",
            "action",
        ),
        (
            "SELECT * FROM fetchq.doc_bulk('q', NULL, NULL, NULL, 'reschedule')",
            "time",
        ),
    ] {
        let err: Error = sqlx::query(sql)
            .fetch_all(&db.pool)
            .await
            .unwrap_err()
            .into();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{what}: {err:?}"
        );
    }
    assert_eq!(c.get("q", "x").await.unwrap().status, Status::Pending);
    assert_counters_exact(&db, "q").await;
}

#[tokio::test]
async fn a_queue_dropped_between_batches_ends_the_bulk_with_queue_not_found() {
    let db = setup().await;
    let c = &db.client;
    push_n(
        c,
        "q",
        (0..3000).map(|i| NewDoc::new(format!("d{i:05}"))).collect(),
    )
    .await;
    let client = c.clone();
    let bulk = tokio::spawn(async move {
        client
            .bulk("q", &DocFilter::new(), BulkAction::Kill, 1)
            .await
    });
    // wait until some batches are done
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dead: i64 =
            sqlx::query_scalar("SELECT count(*) FROM fetchq_data.q__docs WHERE status = -1")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if dead > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bulk made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // hold the queue's row (the next batch waits for it), then drop the queue
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq.queues WHERE name = 'q' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT * FROM fetchq.queue_drop('q')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), bulk)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(Error::QueueNotFound { ref queue }) if queue == "q"),
        "{result:?}"
    );
}

#[tokio::test]
async fn log_list_pages_newest_first() {
    let db = setup().await;
    let c = &db.client;
    for i in 0..25 {
        let subject = if i % 5 == 0 { "five" } else { "other" };
        sqlx::query("SELECT fetchq.log_error('q', $1, $2, $3, 'me')")
            .bind(subject)
            .bind(format!("error {i}"))
            .bind(json!({"i": i}))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = c.log_list("q", None, before, 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap().id);
        seen.extend(page);
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(seen[0].message, "error 24");
    assert_eq!(seen[0].details, Some(json!({"i": 24})));
    assert_eq!(seen[0].ref_id.as_deref(), Some("me"));
    assert_eq!(seen[24].message, "error 0");
    let five = c.log_list("q", Some("five"), None, 1000).await.unwrap();
    assert_eq!(
        five.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["error 20", "error 15", "error 10", "error 5", "error 0"]
    );
    let older = c
        .log_list("q", Some("five"), Some(five[1].id), 2)
        .await
        .unwrap();
    assert_eq!(older.len(), 2);
    assert_eq!(older[0].message, "error 10");
    assert!(
        c.log_list("q", Some("nobody"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn metric_history_reads_snapshots_oldest_first() {
    let db = setup().await;
    let c = &db.client;
    let start = Utc::now() - chrono::Duration::seconds(60);
    assert!(c.metric_history("q", start, 100).await.unwrap().is_empty());
    push_n(
        c,
        "q",
        (0..3).map(|i| NewDoc::new(format!("d{i}"))).collect(),
    )
    .await;
    c.metric_log_pack().await.unwrap();
    c.metric_snap("q").await.unwrap();
    push_n(
        c,
        "q",
        (3..5).map(|i| NewDoc::new(format!("d{i}"))).collect(),
    )
    .await;
    c.metric_log_pack().await.unwrap();
    c.metric_snap("q").await.unwrap();
    let history = c.metric_history("q", start, 10_000).await.unwrap();
    let cnt: Vec<i64> = history
        .iter()
        .filter(|p| p.metric == "cnt")
        .map(|p| p.value)
        .collect();
    assert_eq!(cnt, [3, 5]);
    assert!(
        history
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
    assert_eq!(c.metric_history("q", start, 1).await.unwrap().len(), 1);
    let future = Utc::now() + chrono::Duration::hours(1);
    assert!(c.metric_history("q", future, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn queue_info_carries_the_queue_settings() {
    let db = setup().await;
    let c = &db.client;
    c.queue_set_retry_backoff("q", Duration::from_secs(7), Duration::from_secs(600), 0.5)
        .await
        .unwrap();
    c.queue_set_max_payload_size("q", 4096).await.unwrap();
    for info in [
        c.queue_status("q").await.unwrap(),
        c.queue_list().await.unwrap().remove(0),
    ] {
        assert_eq!(info.name, "q");
        assert_eq!(info.max_payload_size, 4096);
        assert_eq!(info.retry_delay, Duration::from_secs(7));
        assert_eq!(info.retry_delay_max, Duration::from_secs(600));
        assert!((info.retry_jitter - 0.5).abs() < 1e-9);
        assert_eq!(info.logs_retention, Duration::from_secs(86_400));
    }
    assert!(matches!(
        c.queue_status("nope").await,
        Err(Error::QueueNotFound { .. })
    ));
}

/// In a collation that does not sort by code point, prefixes are still
/// matched exactly (without the primary key range).
#[tokio::test]
async fn prefixes_match_in_a_linguistic_collation_too() {
    let db = setup().await;
    let sorts: bool = sqlx::query_scalar("SELECT fetchq.subject_sorts_by_code_point()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(sorts, "the test cluster sorts by code point (C.UTF-8)");
    let name = format!("{}_icu", db.name);
    sqlx::raw_sql(&format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' \
         LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    let url = db.url();
    let base = url.rsplit_once('/').unwrap().0;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{base}/{name}"))
        .await
        .unwrap();
    let c = Client::new(pool.clone());
    c.migrate().await.unwrap();
    c.queue_create("q").await.unwrap();
    let sorts: bool = sqlx::query_scalar("SELECT fetchq.subject_sorts_by_code_point()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!sorts);
    // subjects next to each other in a linguistic order, some with punctuation
    let mut subjects: Vec<&str> = LITERAL_SUBJECTS.to_vec();
    subjects.extend(["a-a", "ab", "a-c", "A-b", "a", "b"]);
    push_n(&c, "q", subjects.iter().map(|s| NewDoc::new(*s)).collect()).await;
    for prefix in [
        "a-",
        "a",
        "A",
        "50%",
        "50%_",
        "back\\",
        "it'",
        "日本",
        "é",
        "e",
        "\u{10FFFF}",
    ] {
        let mut expected: Vec<String> = subjects
            .iter()
            .filter(|s| s.starts_with(prefix))
            .map(|s| (*s).to_owned())
            .collect();
        expected.sort();
        let mut got = list_all(&c, "q", &DocFilter::new().subject_prefix(prefix), 1).await;
        got.sort();
        assert_eq!(got, expected, "prefix {prefix:?}");
    }
    assert_eq!(
        c.bulk(
            "q",
            &DocFilter::new().subject_prefix("a-"),
            BulkAction::Kill,
            1
        )
        .await
        .unwrap(),
        2
    );
    pool.close().await;
    sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&db.pool)
        .await
        .unwrap();
}

/// Seq scans of `q__docs` so far in this connection's transaction.
async fn seq_scans(tx: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(seq_scan), 0)::bigint FROM pg_stat_xact_user_tables \
         WHERE schemaname = 'fetchq_data' AND relname = 'q__docs'",
    )
    .fetch_one(tx)
    .await
    .unwrap()
}

/// A filter the planner believes matches nothing (statistics taken before
/// the documents changed status) must still walk the primary key from
/// `after`, not read and sort the whole table for every page or batch:
/// a bulk over a million documents would otherwise be quadratic.
#[tokio::test]
async fn a_page_or_batch_walks_the_primary_key_even_with_stale_statistics() {
    let db = setup().await;
    let c = &db.client;
    sqlx::query("ALTER TABLE fetchq_data.q__docs SET (autovacuum_enabled = false)")
        .execute(&db.pool)
        .await
        .unwrap();
    for chunk in 0..20 {
        let docs: Vec<NewDoc> = (0..1000)
            .map(|i| NewDoc::new(format!("s{chunk:02}-{i:04}")))
            .collect();
        push_n(c, "q", docs).await;
    }
    // statistics say: every document is pending, none is dead
    sqlx::query("ANALYZE fetchq_data.q__docs")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        c.bulk("q", &DocFilter::new(), BulkAction::Kill, 10_000)
            .await
            .unwrap(),
        20_000
    );
    let mut tx = db.pool.begin().await.unwrap();
    let before = seq_scans(&mut tx).await;
    let page: Vec<String> = sqlx::query_scalar(
        "SELECT subject::text FROM fetchq.doc_list('q', -1, NULL, NULL, 's05', 10)",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(page[0], "s05-0000");
    let first_page: Vec<String> = sqlx::query_scalar(
        "SELECT subject::text FROM fetchq.doc_list('q', -1, NULL, NULL, NULL, 10)",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(first_page[0], "s00-0000");
    let (changed, last): (i32, Option<String>) = sqlx::query_as(
        "SELECT changed, last_subject FROM fetchq.doc_bulk('q', -1, NULL, NULL, 'play', NULL, NULL, 100)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((changed, last.as_deref()), (100, Some("s00-0099")));
    assert_eq!(
        seq_scans(&mut tx).await - before,
        0,
        "a page or a batch read the whole documents table"
    );
    tx.rollback().await.unwrap();
}

/// `bulk_from` with a deadline already past does one batch per call and says
/// where to go on; the steps together visit every match once, and a bad
/// `after` is refused before anything changes.
#[tokio::test]
async fn bulk_in_steps_goes_on_from_next_after() {
    let db = setup().await;
    let c = &db.client;
    push_n(
        c,
        "q",
        (0..250).map(|i| NewDoc::new(format!("s/{i:03}"))).collect(),
    )
    .await;
    let filter = DocFilter::new().status(Status::Pending);
    let past = Some(std::time::Instant::now());
    let (mut after, mut changed, mut calls) = (None::<String>, 0u64, 0);
    loop {
        let step = c
            .bulk_from("q", &filter, BulkAction::Kill, 100, after.as_deref(), past)
            .await
            .unwrap();
        calls += 1;
        changed += step.changed;
        assert!(step.changed <= 100);
        match step.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // 100 + 100 + 50: the third batch is short, so it is the last
    assert_eq!((calls, changed), (3, 250));
    assert_counters_exact(&db, "q").await;
    let err = c
        .bulk_from("q", &filter, BulkAction::Play, 100, Some("a\0b"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}
