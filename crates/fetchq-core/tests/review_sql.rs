//! Review of the schema 10 SQL: the commit-time wake-up trigger, the lock
//! order of destructive queue operations, and the idle next-due time.
//!
//! Tests marked `#[ignore]` demonstrate findings that are reported, not fixed.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::NewDoc;
use fetchq_testing::TestDb;
use sqlx::postgres::PgListener;

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

// ---------------------------------------------------------------- wake-up trigger

/// The deferred trigger fires at commit for counter rows that the same
/// transaction already packed (deleted): PostgreSQL fetches the inserted row
/// with SnapshotAny, so there is neither an error nor a lost wake-up.
#[tokio::test]
async fn a_push_packed_or_its_queue_dropped_in_the_same_transaction_commits() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.queue_create("gone").await.unwrap();
    let mut l = listener(&db).await;

    let mut tx = c.pool().begin().await.unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("a")).await.unwrap();
    sqlx::query("SELECT fetchq.doc_push('q', 'b')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let packed: i32 = sqlx::query_scalar("SELECT fetchq.metric_log_pack()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(packed > 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.metrics_writes")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(left, 0, "the pack deleted the rows the trigger fires for");
    tx.commit().await.unwrap();
    assert!(notified(&mut l, "q", Duration::from_secs(2)).await);
    assert_eq!(c.metric_compute("q").await.unwrap().pending, 2);

    // push, then drop the queue, in one transaction: commits
    let mut tx = c.pool().begin().await.unwrap();
    c.push_with(&mut *tx, "gone", &NewDoc::new("x"))
        .await
        .unwrap();
    sqlx::query("SELECT fetchq.queue_drop('gone')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // user metrics named like the engine's counters: a reset sends nothing
    sqlx::query("SELECT fetchq.metric_log_set('q', 'pnd', 5)")
        .execute(c.pool())
        .await
        .unwrap();
    assert!(!notified(&mut l, "q", Duration::from_millis(300)).await);
}

/// FINDING (low): `SET CONSTRAINTS ALL IMMEDIATE` (Django's
/// `check_constraints()`, many ORMs' fixture loaders) fires the deferred
/// trigger at once, so the pushing transaction takes the debounce lock then
/// and keeps it until it ends: while it stays open, every other push of the
/// queue is silent (schema 8's muted wake-ups again). Idle pools then only
/// find the documents at their next `idle_poll`.
#[tokio::test]
#[ignore = "review finding, not fixed: SET CONSTRAINTS ALL IMMEDIATE re-opens muted wake-ups"]
async fn set_constraints_immediate_in_a_pushing_transaction_mutes_other_pushes() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let mut l = listener(&db).await;

    let mut tx = c.pool().begin().await.unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("in-tx"))
        .await
        .unwrap();
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    c.push("q", &NewDoc::new("committed")).await.unwrap();
    let heard = notified(&mut l, "q", Duration::from_secs(2)).await;
    tx.rollback().await.unwrap();
    assert!(
        heard,
        "a committed push was not heard while a transaction with immediate constraints was open"
    );
}

// ---------------------------------------------------------------- lock order

/// FINDING (medium, fixed): queue_drop (and queue_truncate, metric_reset) took
/// the global counter-repair lock first and then waited for the queue's
/// tables, which any open transaction that pushed to the queue holds.
/// Meanwhile metric_log_pack (try-lock) packed nothing for every queue, and
/// every other queue's repair, truncate or drop waited. Now the exclusion is
/// per queue (the queue's row in fetchq.queues).
#[tokio::test]
async fn a_drop_waiting_for_an_open_push_does_not_stop_packing_for_other_queues() {
    let db = TestDb::with_pool_size(6).await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.queue_create("other").await.unwrap();
    c.metric_log_pack().await.unwrap();

    let mut tx = c.pool().begin().await.unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("open"))
        .await
        .unwrap();

    let dropper = {
        let c = c.clone();
        tokio::spawn(async move { c.queue_drop("q").await })
    };
    // wait until the drop is blocked on the table lock
    let mut waiting = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '%queue_drop%' AND datname = current_database()",
        )
        .fetch_one(c.pool())
        .await
        .unwrap();
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waiting, "the drop never waited");

    c.push("other", &NewDoc::new("x")).await.unwrap();
    c.metric_log_increment("not_a_queue", "hits", 3)
        .await
        .unwrap();
    let packed = c.metric_log_pack().await.unwrap();
    // repairs and truncates of another queue do not wait for the drop either
    // (before the fix they waited for the open transaction: 30 s is generous)
    let others = tokio::time::timeout(Duration::from_secs(30), async {
        c.push("other", &NewDoc::new("y")).await?;
        let repaired = c.metric_reset("other").await?;
        c.queue_truncate("other", false).await?;
        Ok::<_, fetchq_core::Error>(repaired)
    })
    .await;
    tx.rollback().await.unwrap();
    assert!(dropper.await.unwrap().unwrap());
    assert!(
        packed > 0,
        "metric_log_pack packed nothing for another queue while a drop waited"
    );
    let repaired = others
        .expect("a repair of another queue waited for the drop")
        .unwrap();
    assert_eq!(repaired.total, 2);
    assert_eq!(
        c.metric_get("not_a_queue", "hits")
            .await
            .unwrap()
            .map(|m| m.value),
        Some(3),
        "a user metric under a name that is not a queue is packed"
    );
    c.metric_log_pack().await.unwrap();
    assert_eq!(c.metric_get_common("other").await.unwrap().total, 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.metrics WHERE queue = 'q'")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "the dropped queue's counters are gone");
}

/// The pack leaves the writes of a queue whose counters are being replaced
/// (its row held by metric_reset or a truncate) for a later pack, instead of
/// folding them into counters the repair then overwrites or waiting for it.
#[tokio::test]
async fn a_pack_skips_a_queue_under_repair_and_packs_it_later() {
    let db = TestDb::with_pool_size(6).await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.queue_create("other").await.unwrap();
    c.push("q", &NewDoc::new("a")).await.unwrap();
    c.push("other", &NewDoc::new("b")).await.unwrap();
    c.metric_log_increment("q", "custom", 5).await.unwrap();

    let mut tx = c.pool().begin().await.unwrap();
    sqlx::query("SELECT fetchq.queue_lock_exclusive('q')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let packed = tokio::time::timeout(Duration::from_secs(30), c.metric_log_pack())
        .await
        .expect("the pack waited for the locked queue")
        .unwrap();
    let q_writes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fetchq.metrics_writes WHERE queue = 'q'")
            .fetch_one(c.pool())
            .await
            .unwrap();
    assert!(packed > 0, "the other queue's writes were not packed");
    assert!(q_writes > 0, "the locked queue's writes were packed");
    assert_eq!(c.metric_get_common("other").await.unwrap().total, 1);
    tx.commit().await.unwrap();

    c.metric_log_pack().await.unwrap();
    let q_writes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fetchq.metrics_writes WHERE queue = 'q'")
            .fetch_one(c.pool())
            .await
            .unwrap();
    assert_eq!(q_writes, 0);
    assert_eq!(c.metric_get_common("q").await.unwrap().total, 1);
    assert_eq!(
        c.metric_get("q", "custom").await.unwrap().map(|m| m.value),
        Some(5)
    );
}

// ---------------------------------------------------------------- next due

/// FINDING (low): a planned document of the pool's version that fell due
/// between the pool's pick (its now()) and the queue_next_due call more than
/// 100 ms later (a slow round trip, a busy host) is neither picked nor
/// counted: the pool sleeps `idle_poll` instead of picking it. Simulated by a
/// free (unlocked) planned document due 200 ms ago.
#[tokio::test]
#[ignore = "review finding, not fixed: a free due planned document older than 100 ms is not counted"]
async fn next_due_counts_a_free_planned_document_that_fell_due() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("later").at(Duration::from_secs(60)))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE fetchq_data.q__docs SET next_iteration = clock_timestamp() - interval '200 milliseconds'",
    )
    .execute(c.pool())
    .await
    .unwrap();
    let due = c.queue_next_due_for("q", 0).await.unwrap();
    assert!(
        due.is_some_and(|d| d < Duration::from_secs(1)),
        "a free due document gives {due:?}: the pool sleeps idle_poll"
    );
}
