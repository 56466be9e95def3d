//! Per-queue rate limits: settings, exactness under concurrent picks, the
//! sliding window, the SQL function and the client agreeing.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{Client, Error, NewDoc, PickOptions, RateLimit};
use fetchq_testing::TestDb;
use sqlx::Row;

async fn queue_with(client: &Client, queue: &str, docs: usize) {
    client.queue_create(queue).await.unwrap();
    let batch: Vec<NewDoc> = (0..docs)
        .map(|i| NewDoc::new(format!("d{i:05}")).priority(i32::try_from(i).unwrap()))
        .collect();
    client.push_many(queue, &batch).await.unwrap();
}

fn rate(text: &str) -> RateLimit {
    text.parse().unwrap()
}

#[tokio::test]
async fn settings_are_validated_shown_and_removed() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("crawl").await.unwrap();
    assert_eq!(c.queue_status("crawl").await.unwrap().rate_limit, None);
    assert_eq!(c.queue_rate_wait("crawl").await.unwrap(), None);

    c.queue_set_rate_limit("crawl", Some(rate("20/s")))
        .await
        .unwrap();
    let q = c.queue_status("crawl").await.unwrap();
    assert_eq!(q.rate_limit, Some(rate("20/1s")));
    let listed = c.queue_list().await.unwrap();
    assert_eq!(listed[0].rate_limit, Some(rate("20/s")));
    assert_eq!(
        c.queue_rate_wait("crawl").await.unwrap(),
        Some(Duration::ZERO)
    );

    // the SQL function refuses what the type refuses
    for (n, per) in [
        ("0", "1 second"),
        ("100001", "1 second"),
        ("5", "0"),
        ("5", "8 days"),
        ("5", "-1 second"),
    ] {
        let err = sqlx::query(&format!(
            "SELECT fetchq.queue_set_rate_limit('crawl', {n}, '{per}')"
        ))
        .execute(&db.pool)
        .await
        .unwrap_err();
        let err = Error::from(err);
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{n}/{per}: {err:?}"
        );
    }
    let err = sqlx::query("SELECT fetchq.queue_set_rate_limit('crawl', 5, NULL)")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(matches!(Error::from(err), Error::InvalidArgument { .. }));
    // unchanged by the refusals
    assert_eq!(
        c.queue_status("crawl").await.unwrap().rate_limit,
        Some(rate("20/s"))
    );

    for bad in [
        "",
        "5",
        "x/s",
        "5/",
        "5/lightyear",
        "-1/s",
        "0/s",
        "5/0s",
        "100001/s",
        "5/8days",
    ] {
        assert!(
            matches!(bad.parse::<RateLimit>(), Err(Error::InvalidArgument { .. })),
            "{bad:?} parsed"
        );
    }
    assert!(matches!(
        c.queue_set_rate_limit("nope", Some(rate("1/s"))).await,
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        c.queue_rate_wait("nope").await,
        Err(Error::QueueNotFound { .. })
    ));

    c.queue_set_rate_limit("crawl", None).await.unwrap();
    assert_eq!(c.queue_status("crawl").await.unwrap().rate_limit, None);
    let slots: i64 = sqlx::query("SELECT count(*) FROM fetchq.rate_slots")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
}

#[tokio::test]
async fn a_pick_leases_one_document_per_free_slot_by_priority() {
    let db = TestDb::new().await;
    let c = &db.client;
    queue_with(c, "crawl", 20).await;
    c.queue_set_rate_limit("crawl", Some(rate("5/1h")))
        .await
        .unwrap();

    let opts = PickOptions::new().limit(10);
    let first = c.pick_answer("crawl", &opts).await.unwrap();
    assert_eq!(first.docs.len(), 5);
    // the highest priorities, as without a limit
    let prios: Vec<i32> = first.docs.iter().map(|d| d.priority).collect();
    assert_eq!(prios, vec![19, 18, 17, 16, 15]);
    let wait = first.rate_wait.expect("documents were held back");
    assert!(
        wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600),
        "{wait:?}"
    );

    let second = c.pick_answer("crawl", &opts).await.unwrap();
    assert!(second.docs.is_empty());
    assert!(second.rate_wait.unwrap() > Duration::from_secs(3500));
    assert_eq!(
        second.next_due, None,
        "documents are due: only the limit holds them"
    );
    let (docs, wait) = c.pick_idle("crawl", &opts).await.unwrap();
    assert!(docs.is_empty());
    assert!(wait.unwrap() > Duration::from_secs(3500));
    assert!(c.pick("crawl", &opts).await.unwrap().is_empty());

    // nothing was lost: 15 still pending, counters exact
    let counts = c.metric_get_common("crawl").await.unwrap();
    assert_eq!(counts.pending, 15);
    assert_eq!(counts.active, 5);
    assert_eq!(counts.picked, 5);

    // raising the limit frees the new slots at once, the used ones stay used
    c.queue_set_rate_limit("crawl", Some(rate("8/1h")))
        .await
        .unwrap();
    assert_eq!(c.pick("crawl", &opts).await.unwrap().len(), 3);
    // lowering it keeps the newest uses: nothing free
    c.queue_set_rate_limit("crawl", Some(rate("2/1h")))
        .await
        .unwrap();
    assert!(c.pick("crawl", &opts).await.unwrap().is_empty());
    // and removing it lets everything through
    c.queue_set_rate_limit("crawl", None).await.unwrap();
    assert_eq!(
        c.pick("crawl", &PickOptions::new().limit(100))
            .await
            .unwrap()
            .len(),
        12
    );
}

#[tokio::test]
async fn a_short_pick_without_a_limit_says_nothing_of_rates() {
    let db = TestDb::new().await;
    let c = &db.client;
    queue_with(c, "free", 3).await;
    let answer = c
        .pick_answer("free", &PickOptions::new().limit(10))
        .await
        .unwrap();
    assert_eq!(answer.docs.len(), 3);
    assert_eq!(answer.rate_wait, None);
    // a limited queue with fewer due documents than slots is not held back
    queue_with(c, "roomy", 3).await;
    c.queue_set_rate_limit("roomy", Some(rate("10/1h")))
        .await
        .unwrap();
    let answer = c
        .pick_answer("roomy", &PickOptions::new().limit(5))
        .await
        .unwrap();
    assert_eq!(answer.docs.len(), 3);
    assert_eq!(answer.rate_wait, None);
    // and an empty limited queue answers as an idle one does
    let answer = c
        .pick_answer("roomy", &PickOptions::new().limit(5))
        .await
        .unwrap();
    assert!(answer.docs.is_empty());
    assert_eq!(answer.rate_wait, None);
}

#[tokio::test]
async fn the_sql_function_and_the_client_share_the_slots() {
    let db = TestDb::new().await;
    let c = &db.client;
    queue_with(c, "crawl", 10).await;
    c.queue_set_rate_limit("crawl", Some(rate("3/1h")))
        .await
        .unwrap();
    assert_eq!(
        c.pick("crawl", &PickOptions::new().limit(2))
            .await
            .unwrap()
            .len(),
        2
    );
    let rows = sqlx::query("SELECT * FROM fetchq.doc_pick('crawl', 0, 5, '1 minute')")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let rows = sqlx::query("SELECT * FROM fetchq.doc_pick('crawl', 0, 5, '1 minute')")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert!(
        c.pick("crawl", &PickOptions::new())
            .await
            .unwrap()
            .is_empty()
    );
    let counts = c.metric_get_common("crawl").await.unwrap();
    assert_eq!((counts.active, counts.pending), (3, 7));
}

#[tokio::test]
async fn concurrent_picks_never_lease_more_than_the_limit() {
    let db = TestDb::with_pool_size(20).await;
    let c = &db.client;
    queue_with(c, "crawl", 500).await;
    c.queue_set_rate_limit("crawl", Some(rate("50/1h")))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut leased = 0;
            for _ in 0..20 {
                let opts = PickOptions::new().limit(1 + i % 7);
                leased += c.pick("crawl", &opts).await.unwrap().len();
            }
            leased
        }));
    }
    // and SQL users at the same time
    let pool = db.pool.clone();
    let sql = tokio::spawn(async move {
        let mut leased = 0;
        for _ in 0..20 {
            leased += sqlx::query("SELECT * FROM fetchq.doc_pick('crawl', 0, 3, '1 minute')")
                .fetch_all(&pool)
                .await
                .unwrap()
                .len();
        }
        leased
    });
    let mut total = sql.await.unwrap();
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 50, "exactly the limit, with 17 pickers racing");
    let counts = c.metric_get_common("crawl").await.unwrap();
    assert_eq!((counts.active, counts.pending), (50, 450));
}

#[tokio::test]
async fn no_window_of_the_interval_holds_more_than_the_limit() {
    let db = TestDb::with_pool_size(8).await;
    let c = &db.client;
    queue_with(c, "crawl", 2000).await;
    let per = Duration::from_millis(500);
    c.queue_set_rate_limit("crawl", Some(RateLimit::new(4, per).unwrap()))
        .await
        .unwrap();
    let lease = Duration::from_secs(600);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            let mut times = Vec::new();
            while tokio::time::Instant::now() < deadline {
                let answer = c
                    .pick_answer("crawl", &PickOptions::new().limit(3).lease(lease))
                    .await
                    .unwrap();
                for d in &answer.docs {
                    // the pick's time on the database's clock
                    times.push(d.lease.expires_at - chrono::Duration::from_std(lease).unwrap());
                }
                if let Some(w) = answer.rate_wait {
                    tokio::time::sleep(w.max(Duration::from_millis(2))).await;
                }
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    times.sort();
    let per = chrono::Duration::from_std(per).unwrap();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|t| **t - *start < per).count();
        assert!(
            in_window <= 4,
            "{in_window} leases within 500 ms from {start}"
        );
    }
    // 3 s at 4 per 500 ms: 24 at most, and the pickers kept up with most of it
    assert!(times.len() <= 28, "{}", times.len());
    assert!(times.len() >= 12, "only {} leases in 3 s", times.len());
}

#[tokio::test]
async fn slots_go_with_the_queue_and_a_paused_queue_uses_none() {
    let db = TestDb::new().await;
    let c = &db.client;
    queue_with(c, "crawl", 5).await;
    c.queue_set_rate_limit("crawl", Some(rate("2/1h")))
        .await
        .unwrap();
    c.queue_pause("crawl").await.unwrap();
    assert!(
        c.pick("crawl", &PickOptions::new().limit(5))
            .await
            .unwrap()
            .is_empty()
    );
    c.queue_resume("crawl").await.unwrap();
    assert_eq!(
        c.pick("crawl", &PickOptions::new().limit(5))
            .await
            .unwrap()
            .len(),
        2
    );

    assert!(c.queue_drop("crawl").await.unwrap());
    let slots: i64 = sqlx::query("SELECT count(*) FROM fetchq.rate_slots")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
    queue_with(c, "crawl", 5).await;
    assert_eq!(c.queue_status("crawl").await.unwrap().rate_limit, None);
    assert_eq!(
        c.pick("crawl", &PickOptions::new().limit(5))
            .await
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn a_setter_waits_for_a_pick_in_progress_and_loses_nothing() {
    let db = TestDb::new().await;
    let c = &db.client;
    queue_with(c, "crawl", 10).await;
    c.queue_set_rate_limit("crawl", Some(rate("3/1h")))
        .await
        .unwrap();
    // a long-open transaction that picked through SQL holds its slots
    let mut tx = db.pool.begin().await.unwrap();
    let rows = sqlx::query("SELECT * FROM fetchq.doc_pick('crawl', 0, 2, '1 minute')")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    // other picks meanwhile take the free slot only
    assert_eq!(
        c.pick("crawl", &PickOptions::new().limit(5))
            .await
            .unwrap()
            .len(),
        1
    );
    let setter = {
        let c = c.clone();
        tokio::spawn(async move { c.queue_set_rate_limit("crawl", Some(rate("4/1h"))).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!setter.is_finished(), "the setter waits for the slots");
    tx.commit().await.unwrap();
    setter.await.unwrap().unwrap();
    // 3 used, kept by the rebuild: one new slot free
    assert_eq!(
        c.pick("crawl", &PickOptions::new().limit(5))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// EXPLAIN ANALYZE of `sql/per_queue/pick_limited.sql` (the statement of
/// rate-limited queues) for `queue`, limit 2.
async fn explain_pick(db: &TestDb, queue: &str) -> String {
    let sql = include_str!("../sql/per_queue/pick_limited.sql")
        .replace("{docs}", &format!("\"fetchq_data\".\"{queue}__docs\""))
        .replace("{limit}", "2");
    let mut tx = db.client.pool().begin().await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
        .bind(queue)
        .bind(0_i32)
        .bind(Duration::from_secs(300))
        .bind(true)
        .bind(None::<i64>)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    rows.join("\n")
}

/// The plan lines that read the rate slots (scans; the `used` update node
/// itself runs, over a scan that does not).
fn slot_lines(plan: &str) -> Vec<&str> {
    plan.lines()
        .filter(|l| l.contains("Scan") && l.contains("rate_slots"))
        .collect()
}

#[tokio::test]
async fn the_plain_pick_never_names_the_slots_and_hands_limited_queues_over() {
    let plain = include_str!("../sql/per_queue/pick.sql");
    assert!(!plain.contains("rate_slots"));
    let db = TestDb::new().await;
    let c = &db.client;
    queue_with(c, "slow", 5).await;
    c.queue_set_rate_limit("slow", Some(rate("1/1h")))
        .await
        .unwrap();
    let sql = plain
        .replace("{docs}", "\"fetchq_data\".\"slow__docs\"")
        .replace("{limit}", "5");
    let rows = sqlx::query(&sql)
        .bind("slow")
        .bind(0_i32)
        .bind(Duration::from_secs(60))
        .bind(true)
        .bind(None::<i64>)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    // nothing leased by the plain statement, and the hand-over said
    assert_eq!(rows.len(), 1);
    assert!(rows[0].get::<Option<String>, _>(1).is_none());
    assert!(rows[0].get::<bool, _>(12));
    assert_eq!(c.metric_get_common("slow").await.unwrap().active, 0);
}

#[tokio::test]
async fn an_unlimited_queue_never_reads_the_slots() {
    let db = TestDb::new().await;
    let c = &db.client;
    queue_with(c, "free", 5).await;
    queue_with(c, "slow", 5).await;
    c.queue_set_rate_limit("slow", Some(rate("1/1h")))
        .await
        .unwrap();

    let plan = explain_pick(&db, "free").await;
    let lines = slot_lines(&plan);
    assert!(!lines.is_empty(), "{plan}");
    assert!(lines.iter().all(|l| l.contains("never executed")), "{plan}");

    let plan = explain_pick(&db, "slow").await;
    let lines = slot_lines(&plan);
    assert!(
        lines.iter().any(|l| !l.contains("never executed")),
        "{plan}"
    );
}
