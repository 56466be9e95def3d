//! `doc_count`: how many documents a filter matches, bounded by a cap.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq_core::{DocFilter, Error, NewDoc, PickOptions, Status};
use fetchq_testing::TestDb;

#[tokio::test]
async fn counts_match_the_filters_and_stop_at_the_cap() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..300)
        .map(|i| {
            NewDoc::new(format!("{}/{i:03}", if i % 3 == 0 { "a" } else { "b" })).version(i % 2)
        })
        .collect();
    c.push_many("q", &docs).await.unwrap();
    let picked = c
        .pick("q", &PickOptions::new().version(0).limit(10))
        .await
        .unwrap();
    assert_eq!(picked.len(), 10);

    let all = c.doc_count("q", &DocFilter::new(), 1000).await.unwrap();
    assert_eq!((all.matched, all.capped), (300, false));
    let a = c
        .doc_count("q", &DocFilter::new().subject_prefix("a/"), 1000)
        .await
        .unwrap();
    assert_eq!(a.matched, 100);
    let v1 = c
        .doc_count("q", &DocFilter::new().version(1), 1000)
        .await
        .unwrap();
    assert_eq!(v1.matched, 150);
    let active = c
        .doc_count("q", &DocFilter::new().status(Status::Active), 1000)
        .await
        .unwrap();
    assert_eq!(active.matched, 10);
    let dead = c
        .doc_count("q", &DocFilter::new().status(Status::Dead), 1000)
        .await
        .unwrap();
    assert_eq!((dead.matched, dead.capped), (0, false));

    let capped = c.doc_count("q", &DocFilter::new(), 100).await.unwrap();
    assert_eq!((capped.matched, capped.capped), (100, true));
    let exact_cap = c.doc_count("q", &DocFilter::new(), 300).await.unwrap();
    assert_eq!((exact_cap.matched, exact_cap.capped), (300, false));

    // hostile and impossible filters
    let long = "x".repeat(300);
    let none = c
        .doc_count("q", &DocFilter::new().subject_prefix(long), 10)
        .await
        .unwrap();
    assert_eq!(none.matched, 0);
    let wild = c
        .doc_count("q", &DocFilter::new().subject_prefix("%"), 10)
        .await
        .unwrap();
    assert_eq!(wild.matched, 0, "the prefix is literal, not a LIKE pattern");
    assert!(matches!(
        c.doc_count("q", &DocFilter::new().subject_prefix("a\0"), 10)
            .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.doc_count("q", &DocFilter::new(), 0).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.doc_count("nope", &DocFilter::new(), 10).await,
        Err(Error::QueueNotFound { .. })
    ));
}

/// A snapshot taken before any pack holds the exact counters (the console's
/// charts are drawn from snapshots).
#[tokio::test]
async fn snapshots_are_exact_without_a_pack() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..25).map(|i| NewDoc::new(format!("s{i}"))).collect();
    c.push_many("q", &docs).await.unwrap();
    let picked = c.pick("q", &PickOptions::new().limit(5)).await.unwrap();
    for d in &picked {
        c.complete(&d.lease, None).await.unwrap();
    }
    c.metric_snap("q").await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let points = c.metric_history("q", since, 1000).await.unwrap();
    let value = |m: &str| points.iter().find(|p| p.metric == m).map(|p| p.value);
    assert_eq!(value("cnt"), Some(25));
    assert_eq!(value("pnd"), Some(20));
    assert_eq!(value("cpl"), Some(5));
    assert_eq!(value("prc"), Some(5));
}

/// A rare status is listed through its index, a common one by walking the
/// primary key: both give the same pages a brute-force query gives.
#[tokio::test]
async fn rare_and_common_statuses_page_alike() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    // 60,000 pending (more than the rare limit of 50,000), 150 planned, 3 dead
    let docs: Vec<NewDoc> = (0..60_000)
        .map(|i| NewDoc::new(format!("p{:05}", (i * 7919) % 60_000)))
        .collect();
    for chunk in docs.chunks(10_000) {
        c.push_many("q", chunk).await.unwrap();
    }
    let later: Vec<NewDoc> = (0..150)
        .map(|i| {
            NewDoc::new(format!("p{:05}x", i * 397)).at(fetchq_core::Schedule::after(
                std::time::Duration::from_secs(3600),
            ))
        })
        .collect();
    c.push_many("q", &later).await.unwrap();
    for s in ["p00001", "p30000", "p59999"] {
        c.force_kill("q", s).await.unwrap();
    }
    for (status, code) in [
        (Status::Planned, 0),
        (Status::Pending, 1),
        (Status::Dead, -1),
    ] {
        let truth: Vec<String> = sqlx::query_scalar(
            "SELECT subject::text FROM fetchq_data.q__docs WHERE status = $1 ORDER BY subject LIMIT 300",
        )
        .bind(code)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut after: Option<String> = None;
        while got.len() < 300 {
            let page = c
                .doc_list("q", &DocFilter::new().status(status), after.as_deref(), 70)
                .await
                .unwrap();
            got.extend(page.iter().map(|d| d.subject.clone()));
            match page.last() {
                Some(last) if page.len() == 70 => after = Some(last.subject.clone()),
                _ => break,
            }
        }
        got.truncate(300);
        assert_eq!(got, truth, "{status:?}");
    }
    let idx: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'fetchq_data' AND indexname = 'q__docs_dead_idx'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(idx, 1);
}
