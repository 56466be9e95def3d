//! Adding documents: push, insert, push_many, append, upsert, and bad input.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::time::Duration;

use chrono::Utc;
use fetchq_core::{Error, NewDoc, PickOptions, Schedule, Status, Upserted};
use fetchq_testing::TestDb;
use serde_json::json;

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    db
}

#[tokio::test]
async fn push_keeps_subjects_unique_across_every_status() {
    let db = setup().await;
    let c = &db.client;
    assert!(
        c.push("q", &NewDoc::new("ironman").payload(json!({"score": 20})))
            .await
            .unwrap()
    );
    assert!(
        !c.push("q", &NewDoc::new("ironman").payload(json!({"score": 99})))
            .await
            .unwrap()
    );
    assert_eq!(
        c.get("q", "ironman").await.unwrap().payload,
        json!({"score": 20})
    );
    assert!(matches!(
        c.insert("q", &NewDoc::new("ironman")).await,
        Err(Error::Duplicate { .. })
    ));

    // completed and dead documents keep their subject
    let doc = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
    c.complete(&doc.lease, None).await.unwrap();
    assert!(!c.push("q", &NewDoc::new("ironman")).await.unwrap());
    c.push("q", &NewDoc::new("hulk")).await.unwrap();
    let doc = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
    c.kill(&doc.lease, None).await.unwrap();
    assert!(!c.push("q", &NewDoc::new("hulk")).await.unwrap());
    assert_eq!(c.get("q", "hulk").await.unwrap().status, Status::Dead);

    // a dropped document frees its subject
    c.push("q", &NewDoc::new("thor")).await.unwrap();
    let doc = c.pick("q", &PickOptions::new()).await.unwrap().remove(0);
    c.drop_doc(&doc.lease).await.unwrap();
    assert!(matches!(
        c.get("q", "thor").await,
        Err(Error::NotFound { .. })
    ));
    assert!(c.push("q", &NewDoc::new("thor")).await.unwrap());
}

#[tokio::test]
async fn push_sets_planned_or_pending_from_the_time() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("now")).await.unwrap();
    c.push(
        "q",
        &NewDoc::new("past").at(Utc::now() - chrono::Duration::hours(1)),
    )
    .await
    .unwrap();
    c.push("q", &NewDoc::new("later").at(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(c.get("q", "now").await.unwrap().status, Status::Pending);
    assert_eq!(c.get("q", "past").await.unwrap().status, Status::Pending);
    let later = c.get("q", "later").await.unwrap();
    assert_eq!(later.status, Status::Planned);
    let wait = later.next_iteration - Utc::now();
    assert!(wait > chrono::Duration::minutes(59) && wait <= chrono::Duration::minutes(60));
}

#[tokio::test]
async fn push_many_skips_duplicates_and_counts_inserted() {
    let db = setup().await;
    let c = &db.client;
    c.push("q", &NewDoc::new("a")).await.unwrap();
    let batch = vec![
        NewDoc::new("a"),
        NewDoc::new("b")
            .version(1)
            .priority(3)
            .payload(json!({"x": 1})),
        NewDoc::new("b"),
        NewDoc::new("c").at(Duration::from_secs(3600)),
    ];
    assert_eq!(c.push_many("q", &batch).await.unwrap(), 2);
    let b = c.get("q", "b").await.unwrap();
    assert_eq!((b.version, b.priority, b.payload), (1, 3, json!({"x": 1})));
    assert_eq!(c.get("q", "c").await.unwrap().status, Status::Planned);
    assert_eq!(c.push_many("q", &[]).await.unwrap(), 0);
}

#[tokio::test]
async fn push_many_rejects_a_bad_batch_whole() {
    let db = setup().await;
    let c = &db.client;
    let batch = vec![NewDoc::new("ok"), NewDoc::new(""), NewDoc::new("fine")];
    assert!(matches!(
        c.push_many("q", &batch).await,
        Err(Error::InvalidSubject { .. })
    ));
    assert!(
        matches!(c.get("q", "ok").await, Err(Error::NotFound { .. })),
        "nothing written"
    );
    // raw SQL with a malformed element is rejected too
    let err = sqlx::query("SELECT fetchq.doc_push_many('q', '[{\"subject\": 42}]')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(matches!(Error::from(err), Error::InvalidArgument { .. }));
    let err = sqlx::query("SELECT fetchq.doc_push_many('q', '{\"subject\": \"x\"}')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(matches!(Error::from(err), Error::InvalidArgument { .. }));
}

#[tokio::test]
async fn append_generates_unique_subjects() {
    let db = setup().await;
    let c = &db.client;
    let a = c
        .append("q", &json!({"to": "a@example.com"}), 0, 0)
        .await
        .unwrap();
    let b = c
        .append("q", &json!({"to": "a@example.com"}), 0, 0)
        .await
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(c.get("q", &a).await.unwrap().status, Status::Pending);
}

#[tokio::test]
async fn upsert_updates_non_active_documents_only() {
    let db = setup().await;
    let c = &db.client;
    let doc = NewDoc::new("john")
        .priority(1)
        .at(Duration::from_secs(60))
        .payload(json!({"age": 22}));
    assert_eq!(c.upsert("q", &doc).await.unwrap(), Upserted::Inserted);
    assert_eq!(c.get("q", "john").await.unwrap().status, Status::Planned);

    // moving it into the past makes it pending; version is never changed
    let doc = NewDoc::new("john")
        .version(7)
        .priority(2)
        .at(Schedule::now())
        .payload(json!({"age": 23}));
    assert_eq!(c.upsert("q", &doc).await.unwrap(), Upserted::Updated);
    let john = c.get("q", "john").await.unwrap();
    assert_eq!(
        (john.status, john.priority, john.version),
        (Status::Pending, 2, 0)
    );
    assert_eq!(john.payload, json!({"age": 23}));

    let picked = c.pick("q", &PickOptions::new()).await.unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(
        c.upsert("q", &NewDoc::new("john").payload(json!({"age": 99})))
            .await
            .unwrap(),
        Upserted::Unchanged
    );
    assert_eq!(
        c.get("q", "john").await.unwrap().payload,
        json!({"age": 23})
    );
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_changes_nothing() {
    let db = setup().await;
    let c = &db.client;
    assert!(
        matches!(c.push("nope", &NewDoc::new("x")).await, Err(Error::QueueNotFound { queue }) if queue == "nope")
    );
    assert!(matches!(
        c.push("Bad-Name", &NewDoc::new("x")).await,
        Err(Error::InvalidQueueName { .. })
    ));
    assert!(matches!(
        c.push("q", &NewDoc::new("")).await,
        Err(Error::InvalidSubject { .. })
    ));
    assert!(matches!(
        c.push("q", &NewDoc::new("x".repeat(256))).await,
        Err(Error::InvalidSubject { .. })
    ));
    assert!(
        c.push("q", &NewDoc::new("y".repeat(255))).await.unwrap(),
        "255 characters are allowed"
    );
    assert!(matches!(
        c.push("q", &NewDoc::new("x").version(-1)).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.pick("q", &PickOptions::new().lease(Duration::ZERO)).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.pick("q", &PickOptions::new().limit(0)).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.pick("q", &PickOptions::new().version(-3)).await,
        Err(Error::InvalidArgument { .. })
    ));

    c.queue_set_max_payload_size("q", 1024).await.unwrap();
    let big = json!({"blob": "z".repeat(4096)});
    assert!(matches!(
        c.push("q", &NewDoc::new("big").payload(big)).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        c.get("q", "big").await,
        Err(Error::NotFound { .. })
    ));
    let counts = c.metric_compute("q").await.unwrap();
    assert_eq!(
        counts.total, 1,
        "only the valid 255-character subject was stored"
    );
}

#[tokio::test]
async fn push_inside_a_transaction_commits_or_rolls_back_with_it() {
    let db = setup().await;
    let c = &db.client;
    sqlx::query("CREATE TABLE users (email text PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .unwrap();

    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO users VALUES ('ada@example.com')")
        .execute(&mut *tx)
        .await
        .unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("welcome:ada"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO users VALUES ('bob@example.com')")
        .execute(&mut *tx)
        .await
        .unwrap();
    c.push_with(&mut *tx, "q", &NewDoc::new("welcome:bob"))
        .await
        .unwrap();
    c.push_many_with(&mut *tx, "q", &[NewDoc::new("welcome:bob:2")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    assert!(c.get("q", "welcome:ada").await.is_ok());
    assert!(matches!(
        c.get("q", "welcome:bob").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.get("q", "welcome:bob:2").await,
        Err(Error::NotFound { .. })
    ));
    c.metric_log_pack().await.unwrap();
    let counters = c.metric_get_common("q").await.unwrap();
    assert_eq!(
        counters.total, 1,
        "rolled-back pushes leave no counter trace"
    );
    assert_eq!(
        counters.status_counts(),
        c.metric_compute("q").await.unwrap()
    );
}

#[tokio::test]
async fn text_postgres_cannot_store_is_a_typed_error() {
    let db = setup().await;
    let c = &db.client;
    assert!(matches!(
        c.push("q", &NewDoc::new("nul\0byte")).await,
        Err(Error::InvalidSubject { .. })
    ));
    assert!(matches!(
        c.push_many("q", &[NewDoc::new("ok"), NewDoc::new("a\0b")])
            .await,
        Err(Error::InvalidSubject { .. })
    ));
    let nul_payload = NewDoc::new("p").payload(json!({"text": "a\u{0}b"}));
    assert!(matches!(
        c.push("q", &nul_payload).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(
        c.metric_compute("q").await.unwrap().total,
        0,
        "nothing was stored"
    );
    // multi-byte characters count as characters, like PostgreSQL does
    assert!(c.push("q", &NewDoc::new("é".repeat(255))).await.unwrap());
}
