//! Worker registrations (schema 21): lease tokens that carry their owner,
//! and maintenance releasing a lapsed owner's leases through the orphan
//! rescue.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{Client, Error, NewDoc, PickOptions, RateLimit, lease_owner};
use fetchq_testing::TestDb;

const LONG: Duration = Duration::from_secs(300);

async fn status_of(db: &TestDb, queue: &str, subject: &str) -> (i32, i32) {
    sqlx::query_as(&format!(
        "SELECT status, attempts FROM fetchq_data.{queue}__docs WHERE subject = $1"
    ))
    .bind(subject)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Makes `owner`'s registration look an hour old.
async fn lapse(db: &TestDb, owner: i64) {
    sqlx::query("UPDATE fetchq.workers SET seen_at = now() - interval '1 hour' WHERE owner = $1")
        .bind(owner)
        .execute(&db.pool)
        .await
        .unwrap();
}

async fn push(c: &Client, queue: &str, docs: &[NewDoc]) {
    c.push_many(queue, docs).await.unwrap();
}

#[tokio::test]
async fn every_pick_path_puts_the_owner_in_the_token() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    let owner = c
        .worker_register("h1", 7, Duration::from_secs(30))
        .await
        .unwrap();
    let opts = PickOptions::new().limit(2).lease(LONG).owner(Some(owner));
    // plain, rate-limited, keyed
    for (queue, setup) in [("plain", 0), ("limited", 1), ("keyed", 2)] {
        c.queue_create(queue).await.unwrap();
        match setup {
            1 => c
                .queue_set_rate_limit(
                    queue,
                    Some(RateLimit::new(100, Duration::from_secs(1)).unwrap()),
                )
                .await
                .unwrap(),
            2 => c.queue_set_key_concurrency(queue, Some(1)).await.unwrap(),
            _ => {}
        }
        push(
            &c,
            queue,
            &[NewDoc::new("a").key("k1"), NewDoc::new("b").key("k2")],
        )
        .await;
        let docs = c.pick(queue, &opts).await.unwrap();
        assert_eq!(docs.len(), 2, "{queue}");
        for d in &docs {
            assert_eq!(lease_owner(&d.lease.token), owner, "{queue}");
        }
        let in_db: i64 = sqlx::query_scalar(&format!(
            "SELECT fetchq.lease_owner(lease_token) FROM fetchq_data.{queue}__docs WHERE subject = 'a'"
        ))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(in_db, owner, "{queue}");
    }
    // without an owner: random tokens, as before
    c.queue_create("anon").await.unwrap();
    push(&c, "anon", &[NewDoc::new("a"), NewDoc::new("b")]).await;
    let docs = c.pick("anon", &PickOptions::new().limit(2)).await.unwrap();
    assert_eq!(docs.len(), 2);
    assert!(docs.iter().all(|d| lease_owner(&d.lease.token) != owner));
}

#[tokio::test]
async fn a_lapsed_owner_s_leases_go_through_the_orphan_rescue_and_no_one_else_s() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    c.queue_create("r").await.unwrap();
    c.queue_set_max_attempts("q", 2).await.unwrap();
    let docs: Vec<NewDoc> = [("once", 4), ("twice", 3), ("live", 2), ("anon", 1)]
        .into_iter()
        .map(|(s, p)| NewDoc::new(s).priority(p))
        .collect();
    push(&c, "q", &docs).await;
    push(&c, "r", &[NewDoc::new("other")]).await;
    // "twice" failed once already: its next attempt is its last
    sqlx::query("UPDATE fetchq_data.q__docs SET attempts = 1 WHERE subject = 'twice'")
        .execute(&db.pool)
        .await
        .unwrap();
    let dead = c
        .worker_register("h1", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let live = c
        .worker_register("h2", 2, Duration::from_secs(5))
        .await
        .unwrap();
    assert_ne!(dead, live);
    let pick = |owner: Option<i64>| PickOptions::new().lease(LONG).owner(owner);
    let once = c.pick("q", &pick(Some(dead))).await.unwrap();
    let twice = c.pick("q", &pick(Some(dead))).await.unwrap();
    let live_doc = c.pick("q", &pick(Some(live))).await.unwrap();
    let anon = c.pick("q", &pick(None)).await.unwrap();
    let other = c.pick("r", &pick(Some(dead))).await.unwrap();
    assert_eq!(
        [&once, &twice, &live_doc, &anon, &other].map(|d| d[0].subject.as_str()),
        ["once", "twice", "live", "anon", "other"]
    );

    // nobody lapsed: nothing happens
    assert_eq!(c.mnt_rescue_workers().await.unwrap().workers, 0);
    lapse(&db, dead).await;
    let listed = c.worker_list().await.unwrap();
    assert!(listed.iter().any(|w| w.owner == dead && w.lost));
    assert!(listed.iter().any(|w| w.owner == live && !w.lost));

    let rescue = c.mnt_rescue_workers().await.unwrap();
    assert_eq!((rescue.workers, rescue.released), (1, 3));
    assert_eq!(status_of(&db, "q", "once").await, (1, 1), "retried");
    assert_eq!(
        status_of(&db, "q", "twice").await,
        (-1, 2),
        "dead past max attempts"
    );
    assert_eq!(status_of(&db, "r", "other").await, (1, 1), "in every queue");
    assert_eq!(
        status_of(&db, "q", "live").await.0,
        2,
        "a live owner keeps its lease"
    );
    assert_eq!(
        status_of(&db, "q", "anon").await.0,
        2,
        "a token without owner is kept"
    );
    // logged and counted as orphans
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fetchq_data.q__logs WHERE ref_id = 'fetchq:orphan'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(logged, 2);
    c.metric_log_pack().await.unwrap();
    let q = c.metric_get_common("q").await.unwrap();
    assert_eq!(
        (q.active, q.orphans, q.dead, q.pending),
        (2, 2, 1, 1),
        "{q:?}"
    );
    // the registration is gone: its renewal says so, its late outcome is refused
    assert!(!c.worker_heartbeat(dead).await.unwrap());
    assert!(c.worker_heartbeat(live).await.unwrap());
    let late = c.complete(&once[0].lease, None).await;
    assert!(matches!(late, Err(Error::LeaseLost { .. })), "{late:?}");
    // a second pass finds nothing
    assert_eq!(c.mnt_rescue_workers().await.unwrap(), Default::default());
    // a clean stop removes a registration
    assert!(c.worker_deregister(live).await.unwrap());
    assert!(!c.worker_deregister(live).await.unwrap());
    assert!(c.worker_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_registrations_are_refused_with_a_typed_error() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    for bad in [Duration::ZERO, Duration::from_secs(86_401)] {
        let e = c.worker_register("h", 1, bad).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    }
    let e = c
        .worker_register(&"h".repeat(256), 1, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    // the engine checks too, for callers of the SQL function
    let raw = sqlx::query("SELECT fetchq.worker_register('h', 1, interval '-1 second')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(raw.to_string().contains("rescue_after"), "{raw}");
    assert!(c.worker_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_queue_leased_under_schema_20_keeps_working_after_the_upgrade() {
    let db = TestDb::new().await;
    let pool = db.database_at(20).await;
    let old = Client::new(pool.clone());
    old.queue_create("q").await.unwrap();
    push(&old, "q", &[NewDoc::new("a"), NewDoc::new("b")]).await;
    let leased = old
        .pick("q", &PickOptions::new().lease(LONG))
        .await
        .unwrap();
    old.migrate().await.unwrap();
    let new = Client::new(pool.clone());
    assert_eq!(new.info().await.unwrap().schema_version, 21);
    // the lease taken before the upgrade is still good
    new.complete(&leased[0].lease, None).await.unwrap();
    let owner = new
        .worker_register("h", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let docs = new
        .pick("q", &PickOptions::new().lease(LONG).owner(Some(owner)))
        .await
        .unwrap();
    assert_eq!(lease_owner(&docs[0].lease.token), owner);
    // a rescue leaves the pre-upgrade, ownerless leases alone
    sqlx::query("UPDATE fetchq.workers SET seen_at = now() - interval '1 hour'")
        .execute(&pool)
        .await
        .unwrap();
    let rescue = new.mnt_rescue_workers().await.unwrap();
    assert_eq!((rescue.workers, rescue.released), (1, 1));
}

/// Review of bf10262: a queue dropped while mnt_rescue_workers runs (its
/// queue list read before the drop commits) fails the whole rescue with
/// 42P01 (undefined table), which the runtime's leader takes for "a schema
/// older than 21" and turns the rescue off for a minute. The rescue should
/// skip the queue that is gone.
#[tokio::test]
async fn a_queue_dropped_during_the_rescue_does_not_fail_it() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("a").await.unwrap();
    c.queue_create("b").await.unwrap();
    push(&c, "a", &[NewDoc::new("x")]).await;
    let owner = c
        .worker_register("h1", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let opts = PickOptions::new().lease(LONG).owner(Some(owner));
    assert_eq!(c.pick("a", &opts).await.unwrap().len(), 1);
    lapse(&db, owner).await;
    // queue "b" as a drop in progress leaves it to the rescue: listed, its
    // table gone
    sqlx::raw_sql("DROP TABLE fetchq_data.b__docs CASCADE")
        .execute(&db.pool)
        .await
        .unwrap();
    let rescue = c.mnt_rescue_workers().await.unwrap();
    assert_eq!((rescue.workers, rescue.released), (1, 1), "{rescue:?}");
    assert_eq!(status_of(&db, "a", "x").await, (1, 1));
}

/// Review of bf10262: mnt_rescue_workers ends the lapsed owner's leases and
/// then runs the orphan rescue with a limit of that many documents: older
/// orphans of the queue (someone else's leases that ran out) go first, so the
/// owner's documents are reported released but stay active until a later
/// maintenance round.
#[tokio::test]
async fn the_rescue_releases_the_lapsed_owner_s_documents_not_other_orphans() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    push(
        &c,
        "q",
        &[
            NewDoc::new("old").priority(2),
            NewDoc::new("mine").priority(1),
        ],
    )
    .await;
    // an orphan that maintenance has not seen yet: a lease that ran out
    let old = c.pick("q", &PickOptions::new().lease(LONG)).await.unwrap();
    assert_eq!(old[0].subject, "old");
    sqlx::query(
        "UPDATE fetchq_data.q__docs SET next_iteration = now() - interval '1 minute' WHERE subject = 'old'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let owner = c
        .worker_register("h1", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let opts = PickOptions::new().lease(LONG).owner(Some(owner));
    assert_eq!(c.pick("q", &opts).await.unwrap()[0].subject, "mine");
    lapse(&db, owner).await;
    let rescue = c.mnt_rescue_workers().await.unwrap();
    assert_eq!(rescue.released, 1);
    let (status, _) = status_of(&db, "q", "mine").await;
    assert_ne!(status, 2, "reported released, still active");
}

/// Review of bf10262: the rescue's UPDATE waits for row locks (the orphan
/// rescue it replaces skips them): one document of a lapsed owner locked by
/// another transaction (a caller's open transaction, or a statement whose
/// COMMIT never arrived under transaction pooling) blocks mnt_rescue_workers
/// and with it the leader's whole maintenance round, for as long as the lock
/// is held.
#[tokio::test]
async fn a_locked_document_does_not_block_the_rescue() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("a").await.unwrap();
    push(&c, "a", &[NewDoc::new("x"), NewDoc::new("y")]).await;
    let owner = c
        .worker_register("h1", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let opts = PickOptions::new().limit(2).lease(LONG).owner(Some(owner));
    assert_eq!(c.pick("a", &opts).await.unwrap().len(), 2);
    lapse(&db, owner).await;
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM fetchq_data.a__docs WHERE subject = 'x' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rescue = tokio::time::timeout(Duration::from_secs(3), c.mnt_rescue_workers()).await;
    tx.rollback().await.unwrap();
    assert!(
        rescue.is_ok(),
        "mnt_rescue_workers waited 3 s on a locked document"
    );
}
