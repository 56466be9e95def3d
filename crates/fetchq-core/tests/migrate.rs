//! Installing the schema: idempotent, concurrent, refuses downgrades and edits.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq_core::{Error, MIGRATIONS, latest_schema_version, migrate};
use fetchq_testing::TestDb;

#[tokio::test]
async fn migrate_is_idempotent_and_reports_the_schema_version() {
    let db = TestDb::new().await;
    // the template already applied everything
    let again = migrate(&db.pool).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.from_version, latest_schema_version());
    let info = db.client.info().await.unwrap();
    assert_eq!(info.schema_version, latest_schema_version());
    assert_eq!(info.version, format!("5.{}.0", latest_schema_version()));
}

#[tokio::test]
async fn concurrent_migrations_on_an_empty_database_apply_each_step_once() {
    let db = TestDb::new().await;
    let empty = db.create_empty_database().await;
    let pool = db.pool_on(&empty, 20).await;
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { migrate(&pool).await })
        })
        .collect();
    let mut applied_total = 0;
    for run in runs {
        applied_total += run.await.unwrap().unwrap().applied.len();
    }
    assert_eq!(
        applied_total,
        MIGRATIONS.len(),
        "each migration applied by exactly one process"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, MIGRATIONS.len() as i64);
    pool.close().await;
    db.drop_database(&empty).await;
}

#[tokio::test]
async fn a_newer_schema_is_never_downgraded() {
    let db = TestDb::new().await;
    let future = latest_schema_version() + 1;
    sqlx::query(
        "INSERT INTO fetchq.migrations (version, name, checksum) VALUES ($1, 'future', 'x')",
    )
    .bind(future)
    .execute(&db.pool)
    .await
    .unwrap();
    match migrate(&db.pool).await {
        Err(Error::SchemaTooNew { found, supported }) => {
            assert_eq!(found, future);
            assert_eq!(supported, latest_schema_version());
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn an_edited_migration_is_detected() {
    let db = TestDb::new().await;
    sqlx::query("UPDATE fetchq.migrations SET checksum = 'tampered' WHERE version = 2")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(matches!(
        migrate(&db.pool).await,
        Err(Error::MigrationChanged { version: 2, .. })
    ));
}
