//! The generated PostgreSQL extension installs the same engine as `migrate`.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq_core::{extension, latest_schema_version, migrate};
use fetchq_testing::{TestDb, test_cluster};

#[tokio::test]
async fn create_extension_installs_a_working_engine() {
    let db = TestDb::new().await;
    // the extension files go where the server looks for them
    let dir = test_cluster()
        .extension_dir()
        .expect("pg_config --sharedir");
    if let Err(e) = extension::write_files(&dir) {
        if std::env::var_os("CI").is_some() {
            panic!("cannot install the extension into {}: {e}", dir.display());
        }
        eprintln!(
            "skipping: cannot write {} ({e}); run as root or in CI",
            dir.display()
        );
        return;
    }
    if std::env::var_os("DATABASE_URL").is_some() {
        eprintln!(
            "note: DATABASE_URL is set; the extension files were written for the local binaries"
        );
    }
    let empty = db.create_empty_database().await;
    let pool = db.pool_on(&empty, 2).await;
    sqlx::raw_sql("CREATE EXTENSION fetchq")
        .execute(&pool)
        .await
        .unwrap();

    let version: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'fetchq'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, extension::version_for(latest_schema_version()));
    let (info_version, schema): (String, i32) =
        sqlx::query_as("SELECT version::text, schema_version FROM fetchq.info()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(info_version, version);
    assert_eq!(schema, latest_schema_version());

    // the engine works from plain SQL
    sqlx::raw_sql("SELECT fetchq.queue_create('ext_q'); SELECT fetchq.doc_push('ext_q', 'hello');")
        .execute(&pool)
        .await
        .unwrap();
    let picked: Vec<String> =
        sqlx::query_scalar("SELECT subject::text FROM fetchq.doc_pick('ext_q', 0, 10, '1 minute')")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(picked, vec!["hello".to_owned()]);

    // and the Rust migrator sees it as current
    let report = migrate(&pool).await.unwrap();
    assert!(report.applied.is_empty());
    pool.close().await;
    db.drop_database(&empty).await;
}
