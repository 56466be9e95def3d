//! Hostile input: quotes, semicolons and dollar quotes never reach SQL as code.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq_core::{Error, NewDoc, PickOptions};
use fetchq_testing::TestDb;
use serde_json::json;

const NASTY: &[&str] = &[
    "'; DROP TABLE fetchq.queues; --",
    "\"; DROP SCHEMA fetchq CASCADE; --",
    "$$; DROP SCHEMA fetchq_data CASCADE; $$",
    "$q$ || pg_sleep(5) || $q$",
    "robert'); DELETE FROM fetchq.metrics; --",
    "x\\'; SELECT 1; --",
    "ünïcödé ✓ \u{1F600}",
];

async fn intact(db: &TestDb) {
    let queues: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.queues")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(queues, 1, "fetchq.queues is intact");
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'fetchq_data'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(tables, 3, "the queue's tables are intact");
}

#[tokio::test]
async fn hostile_subjects_messages_and_payloads_are_stored_verbatim() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    for (i, nasty) in NASTY.iter().enumerate() {
        assert!(
            c.push("q", &NewDoc::new(*nasty).payload(json!({"v": nasty})))
                .await
                .unwrap()
        );
        let state = c.get("q", nasty).await.unwrap();
        assert_eq!(state.subject, *nasty);
        assert_eq!(state.payload, json!({"v": nasty}));
        c.push_many("q", &[NewDoc::new(format!("{nasty}{i}"))])
            .await
            .unwrap();
    }
    let docs = c.pick("q", &PickOptions::new().limit(100)).await.unwrap();
    assert_eq!(docs.len(), NASTY.len() * 2);
    for doc in &docs {
        c.reject(
            &doc.lease,
            NASTY[0],
            Some(&json!({"m": NASTY[2]})),
            Some(NASTY[1]),
        )
        .await
        .unwrap();
        c.log_error("q", &doc.subject, NASTY[2], None, Some(NASTY[3]))
            .await
            .unwrap();
    }
    let msgs: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT message FROM fetchq_data.q__logs ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut expected = vec![NASTY[0].to_owned(), NASTY[2].to_owned()];
    expected.sort();
    assert_eq!(msgs, expected);
    let trace = c.trace(NASTY[0]).await.unwrap();
    assert!(trace.iter().any(|s| s.kind == "error"));
    intact(&db).await;
}

#[tokio::test]
async fn hostile_queue_names_are_refused_by_rust_and_by_sql() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    for nasty in NASTY
        .iter()
        .copied()
        .chain(["Q", "q q", "q;", "q--", "", "a".repeat(41).as_str()])
    {
        assert!(
            matches!(
                c.queue_create(nasty).await,
                Err(Error::InvalidQueueName { .. })
            ),
            "{nasty}"
        );
        assert!(matches!(
            c.push(nasty, &NewDoc::new("x")).await,
            Err(Error::InvalidQueueName { .. })
        ));
        // straight to SQL, bypassing the Rust check
        for sql in [
            "SELECT * FROM fetchq.queue_create($1)",
            "SELECT * FROM fetchq.doc_push($1, 'x')",
            "SELECT * FROM fetchq.doc_pick($1, 0, 1, '1 minute')",
            "SELECT * FROM fetchq.queue_drop($1)",
            "SELECT * FROM fetchq.metric_log_increment($1, 'm', 1)",
        ] {
            let err = sqlx::query(sql)
                .bind(nasty)
                .execute(&db.pool)
                .await
                .unwrap_err();
            let err = Error::from(err);
            assert!(
                matches!(err, Error::InvalidQueueName { .. }),
                "{sql} with {nasty:?}: {err:?}"
            );
            assert_eq!(err.sqlstate(), Some("FQ001"));
        }
    }
    intact(&db).await;
}

#[tokio::test]
async fn an_unknown_queue_is_a_clear_error_everywhere() {
    let db = TestDb::new().await;
    for sql in [
        "SELECT * FROM fetchq.doc_push($1, 'x')",
        "SELECT * FROM fetchq.doc_pick($1, 0, 1, '1 minute')",
        "SELECT * FROM fetchq.doc_complete($1, 'x')",
        "SELECT * FROM fetchq.metric_get_common($1)",
        "SELECT * FROM fetchq.queue_set_max_attempts($1, 3)",
        "SELECT * FROM fetchq.mnt_run($1, 10)",
    ] {
        let err = Error::from(
            sqlx::query(sql)
                .bind("ghost")
                .execute(&db.pool)
                .await
                .unwrap_err(),
        );
        match err {
            Error::QueueNotFound { queue } => assert_eq!(queue, "ghost"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    // dropping a queue that does not exist is not an error
    assert!(!db.client.queue_drop("ghost").await.unwrap());
}
