//! Rebuilding bloated indexes: a sparse primary key is rebuilt, a merely
//! well-used one is not, and a rebuild stopped by a lock wait or a dead
//! client leaves nothing behind for long.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use fetchq_core::{NewDoc, PickOptions, Schedule, Skip, SkippedIndex};
use fetchq_testing::TestDb;
use sqlx::{Connection, PgConnection, PgPool};

const PKEY: &str = "fetchq_data.seq__docs_pkey";

async fn invalid_indexes(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'fetchq_data' AND NOT i.indisvalid ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn size(pool: &PgPool, relation: &str) -> i64 {
    sqlx::query_scalar("SELECT pg_relation_size($1::regclass)")
        .bind(relation)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A connection holding a write lock on the queue's table, as an open
/// transaction that updated a document does: every concurrent index build
/// of that table waits for it.
async fn open_writer(db: &TestDb) -> PgConnection {
    let mut conn = PgConnection::connect(&db.url()).await.unwrap();
    sqlx::raw_sql(
        "BEGIN; UPDATE fetchq_data.seq__docs SET priority = priority
         WHERE subject = 'https://example.com/page/00000016'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// splitmix64: a stable scramble of 0, 1, 2... (random-order subjects)
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[tokio::test]
async fn a_sparse_primary_key_is_rebuilt_and_a_random_one_is_left_alone() {
    let db = TestDb::new().await;
    let c = &db.client;
    let kept = db.sparse_queue("seq", 40_000).await;
    // the same number of documents, pushed in random order and all kept
    c.queue_create("rnd").await.unwrap();
    let subjects: Vec<String> = (0..40_000u64)
        .map(|i| format!("https://example.com/{:016x}", mix(i)))
        .collect();
    let mut conn = db.pool.acquire().await.unwrap();
    for chunk in subjects.chunks(1000) {
        let batch: Vec<_> = chunk.iter().map(NewDoc::new).collect();
        c.push_many_with(&mut *conn, "rnd", &batch).await.unwrap();
    }
    sqlx::raw_sql("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql("VACUUM ANALYZE fetchq_data.rnd__docs")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let before = size(&db.pool, PKEY).await;
    let done = c.reindex_bloated(Duration::from_secs(30)).await.unwrap();
    let names: Vec<&str> = done.rebuilt.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&PKEY), "rebuilt: {names:?}");
    assert!(
        !names.iter().any(|n| n.contains("rnd__")),
        "a key filled in random order is not bloated: {names:?}"
    );
    let pkey = done.rebuilt.iter().find(|r| r.name == PKEY).unwrap();
    assert_eq!(pkey.bytes_before, before);
    let after = size(&db.pool, PKEY).await;
    assert_eq!(pkey.bytes_after, after);
    assert!(
        after * 5 < before,
        "one in 16 kept: the key shrinks about tenfold ({before} -> {after} bytes)"
    );
    assert!(done.dropped.is_empty());

    // nothing lost, the queue works, and a second call finds nothing to do
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.seq__docs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, kept);
    c.get("seq", "https://example.com/page/00000032")
        .await
        .expect("a kept document is found through the new key");
    assert!(
        !c.push("seq", &NewDoc::new("https://example.com/page/00000032"))
            .await
            .unwrap(),
        "the rebuilt key still rejects a duplicate subject"
    );
    let again = c.reindex_bloated(Duration::from_secs(30)).await.unwrap();
    assert_eq!(again, fetchq_core::Reindexed::default());
    assert!(invalid_indexes(&db.pool).await.is_empty());
}

#[tokio::test]
async fn a_rebuild_stopped_by_an_open_transaction_is_cleaned_up_next_time() {
    let db = TestDb::new().await;
    let c = &db.client;
    db.sparse_queue("seq", 40_000).await;
    let mut writer = open_writer(&db).await;
    let done = c.reindex_bloated(Duration::from_millis(300)).await.unwrap();
    assert_eq!(
        done.skipped,
        vec![SkippedIndex {
            name: PKEY.into(),
            why: Skip::LockTimeout
        }],
        "{done:?}"
    );
    assert!(done.rebuilt.is_empty(), "{done:?}");
    let leftovers = invalid_indexes(&db.pool).await;
    assert_eq!(
        leftovers.len(),
        1,
        "the failed build's index: {leftovers:?}"
    );
    // the queue keeps working meanwhile, through the invalid index too
    c.push(
        "seq",
        &NewDoc::new("https://example.com/page/99999999").at(Schedule::now()),
    )
    .await
    .unwrap();

    sqlx::raw_sql("COMMIT").execute(&mut writer).await.unwrap();
    let done = c.reindex_bloated(Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.dropped.len(), 1, "{done:?}");
    assert!(done.dropped[0].ends_with(&leftovers[0]), "{done:?}");
    assert!(done.rebuilt.iter().any(|r| r.name == PKEY), "{done:?}");
    assert!(invalid_indexes(&db.pool).await.is_empty());
    let picked = c.pick("seq", &PickOptions::new().limit(10)).await.unwrap();
    assert_eq!(picked.len(), 1, "the document pushed meanwhile is due");
}

#[tokio::test]
async fn a_rebuild_whose_caller_dies_ends_on_the_server() {
    let db = TestDb::new().await;
    db.sparse_queue("seq", 40_000).await;
    let mut writer = open_writer(&db).await;
    let client = db.client.clone();
    let rebuild =
        tokio::spawn(async move { client.reindex_bloated(Duration::from_secs(600)).await });
    let rebuilding = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'REINDEX%'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let started = tokio::time::Instant::now();
    while rebuilding().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no REINDEX started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the caller is gone (a killed process closes its sockets the same way)
    rebuild.abort();
    let _ = rebuild.await;
    let gone = tokio::time::Instant::now();
    while rebuilding().await > 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(20),
            "the server kept the dead client's REINDEX waiting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::raw_sql("COMMIT").execute(&mut writer).await.unwrap();
    let done = db
        .client
        .reindex_bloated(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        done.dropped.len(),
        1,
        "the dead rebuild's leftover: {done:?}"
    );
    assert!(invalid_indexes(&db.pool).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_yields_to_a_queue_drop() {
    let db = TestDb::new().await;
    db.sparse_queue("seq", 40_000).await;
    // a snapshot held open elsewhere: the rebuild's last phase waits for it
    let mut reader = PgConnection::connect(&db.url()).await.unwrap();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM fetchq.queues")
        .execute(&mut reader)
        .await
        .unwrap();
    let client = db.client.clone();
    let rebuild =
        tokio::spawn(async move { client.reindex_bloated(Duration::from_secs(600)).await });
    let started = tokio::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'REINDEX%' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no REINDEX waiting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // without the yield the drop would wait for the rebuild, which waits
    // for the reader
    let dropped = tokio::time::timeout(Duration::from_secs(15), db.client.queue_drop("seq"))
        .await
        .expect("the queue drop waited for the rebuild")
        .unwrap();
    assert!(dropped, "the queue was dropped");
    let done = tokio::time::timeout(Duration::from_secs(15), rebuild)
        .await
        .expect("the rebuild ended")
        .unwrap()
        .unwrap();
    assert_eq!(
        done.skipped,
        vec![SkippedIndex {
            name: PKEY.into(),
            why: Skip::Yielded
        }],
        "{done:?}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut reader)
        .await
        .unwrap();
    assert!(invalid_indexes(&db.pool).await.is_empty());
}

#[tokio::test]
async fn a_transaction_pooling_client_is_refused() {
    let db = TestDb::new().await;
    let c = db.client.clone().transaction_pooling(true);
    let err = c.reindex_bloated(Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(err, fetchq_core::Error::InvalidArgument { .. }),
        "{err:?}"
    );
}
