//! The path from a `fetchq init` install to `CREATE EXTENSION fetchq`: dump
//! every queue, drop the schemas, create the extension, restore.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use fetchq_backup::{DumpOptions, RestoreOptions};
use fetchq_testing::{TestDb, test_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_migrated_database_to_the_extension() {
    let db = TestDb::new().await;
    let dir = test_cluster()
        .extension_dir()
        .expect("pg_config --sharedir");
    if let Err(e) = fetchq_core::extension::write_files(&dir) {
        if std::env::var_os("CI").is_some() {
            panic!("cannot install the extension into {}: {e}", dir.display());
        }
        eprintln!("skipping: cannot write {} ({e})", dir.display());
        return;
    }
    common::fill(&db.pool, "alpha", 2000).await;
    fetchq_testing::mixed_workload(&db.client, "beta", 300).await;
    let before_alpha = common::table_hash(
        &db.pool,
        "(SELECT subject, payload, version, priority FROM fetchq_data.alpha__docs)",
    )
    .await;
    let file = common::dump_bytes(
        &db.pool,
        &DumpOptions::all().include_logs(true).include_metrics(true),
    )
    .await;

    // the extension refuses to install over the migrated schema
    let err = sqlx::raw_sql("CREATE EXTENSION fetchq")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a member of extension"),
        "{err}"
    );

    sqlx::raw_sql(
        "DROP SCHEMA fetchq_data CASCADE; DROP SCHEMA fetchq CASCADE; CREATE EXTENSION fetchq;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let s = fetchq_backup::restore(&db.pool, &RestoreOptions::default(), Cursor::new(file))
        .await
        .unwrap();
    assert_eq!(s.queues.len(), 2);
    assert_eq!(s.queues[0].docs_written, 2000);
    assert_eq!(
        common::table_hash(
            &db.pool,
            "(SELECT subject, payload, version, priority FROM fetchq_data.alpha__docs)"
        )
        .await,
        before_alpha
    );
    let ext: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_extension WHERE extname = 'fetchq'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(ext, 1);
    let jobs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fetchq.jobs WHERE queue IN ('alpha', 'beta')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(jobs, 6);
    for q in ["alpha", "beta"] {
        let real = db.client.metric_compute(q).await.unwrap();
        let c = db.client.metric_get_common(q).await.unwrap();
        assert_eq!(
            (c.total, c.pending, c.dead, c.completed),
            (real.total, real.pending, real.dead, real.completed)
        );
    }
}
