//! Dump and restore round trips: every field, every status, logs, counters.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use common::{dump_bytes, fill};
use fetchq_backup::{Compression, DumpOptions, RestoreOptions};
use fetchq_testing::TestDb;

/// The columns compared between the source and the restored queue; an active
/// document comes back pending, due now, without its lease.
const COLS: &str = "subject, version, priority, CASE WHEN status = 2 THEN 1 ELSE status END, attempts, iterations, \
     CASE WHEN status = 2 THEN NULL ELSE next_iteration END, created_at, last_iteration, \
     CASE WHEN status = 2 THEN NULL ELSE lease_token END, payload, key";
const COLS_RESTORED: &str = "subject, version, priority, status, attempts, iterations, \
     CASE WHEN lease_token IS NULL AND status = 1 AND next_iteration > now() - interval '10 minutes' AND subject IN (SELECT subject FROM fetchq_data.src__docs WHERE status = 2) THEN NULL ELSE next_iteration END, \
     created_at, last_iteration, lease_token, payload, key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_documents_every_field_every_status() {
    let db = TestDb::new().await;
    fill(&db.pool, "src", 100_000).await;
    fetchq_testing::mixed_workload(&db.client, "other", 300).await;
    let before_other = common::table_hash(&db.pool, "fetchq_data.other__docs").await;

    let opts = DumpOptions::queues(["src", "other"])
        .include_logs(true)
        .include_metrics(true);
    let (file, summary) = fetchq_backup::dump_into(&db.pool, &opts, Vec::new())
        .await
        .unwrap();
    let q = &summary.header.queues[0];
    assert_eq!(q.counts.cnt, 100_000);
    assert_eq!(q.counts.act, 20_000);
    assert_eq!(q.active_restored_as_due, 20_000);
    assert_eq!(q.logs, Some(50));
    assert!(q.metrics.unwrap() > 0);
    assert_eq!(q.settings["max_attempts"], 7);
    assert_eq!(summary.header.queues[1].name, "other");
    assert!(
        file.len() < 100_000 * 60,
        "zstd file of {} bytes",
        file.len()
    );

    // restore the file into a second database: same names
    let empty = db.create_empty_database().await;
    let pool2 = db.pool_on(&empty, 4).await;
    fetchq_core::migrate(&pool2).await.unwrap();
    let restored = fetchq_backup::restore(
        &pool2,
        &RestoreOptions::default(),
        Cursor::new(file.clone()),
    )
    .await
    .unwrap();
    assert_eq!(restored.queues[0].docs_written, 100_000);
    assert_eq!(restored.queues[0].active_restored_as_due, 20_000);
    assert_eq!(restored.queues[0].logs, 50);
    assert!(restored.queues[0].created);
    // the other queue has no active document transformation except its active ones
    let client2 = fetchq_core::Client::new(pool2.clone());
    for queue in ["src", "other"] {
        let real = client2.metric_compute(queue).await.unwrap();
        let counters = client2.metric_get_common(queue).await.unwrap();
        assert_eq!(
            (
                counters.total,
                counters.planned,
                counters.pending,
                counters.active,
                counters.completed,
                counters.dead
            ),
            (
                real.total,
                real.planned,
                real.pending,
                real.active,
                real.completed,
                real.dead
            ),
            "counters of {queue} exact after restore"
        );
        assert_eq!(real.active, 0);
    }
    // the counters the restore wrote (the reader counts a created queue's
    // documents) are exactly what metric_reset writes from the table,
    // versions included
    let all_counters = "SELECT coalesce(jsonb_object_agg(metric, value), '{}') FROM (
           SELECT metric, sum(value)::bigint AS value FROM (
             SELECT metric, value FROM fetchq.metrics WHERE queue = $1
             UNION ALL SELECT metric, increment FROM fetchq.metrics_writes
               WHERE queue = $1 AND increment IS NOT NULL) u
           WHERE metric IN ('cnt', 'pln', 'pnd', 'act', 'kll', 'cpl') OR metric ~ '^v[0-9]+$'
           GROUP BY metric) c";
    for queue in ["src", "other"] {
        let written: serde_json::Value = sqlx::query_scalar(all_counters)
            .bind(queue)
            .fetch_one(&pool2)
            .await
            .unwrap();
        sqlx::query("SELECT * FROM fetchq.metric_reset($1)")
            .bind(queue)
            .execute(&pool2)
            .await
            .unwrap();
        let reset: serde_json::Value = sqlx::query_scalar(all_counters)
            .bind(queue)
            .fetch_one(&pool2)
            .await
            .unwrap();
        assert_eq!(written, reset, "status and version counters of {queue}");
        if queue == "src" {
            assert_eq!(written["v2"], 33_333, "{written}");
        }
    }
    let src_common = db.client.metric_get_common("other").await.unwrap();
    let dst_common = client2.metric_get_common("other").await.unwrap();
    assert_eq!(
        dst_common.rejected, src_common.rejected,
        "history counters kept"
    );
    drop(pool2);
    db.drop_database(&empty).await;

    // and into a new name in the same database: field by field
    let restored = fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default().rename("copy"),
        Cursor::new(
            dump_bytes(
                &db.pool,
                &DumpOptions::queues(["src"])
                    .include_logs(true)
                    .include_metrics(true)
                    .compression(Compression::Gzip),
            )
            .await,
        ),
    )
    .await
    .unwrap();
    assert_eq!(restored.queues[0].name, "copy");
    let diff: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM ((SELECT {COLS} FROM fetchq_data.src__docs EXCEPT ALL SELECT {COLS_RESTORED} FROM fetchq_data.copy__docs)
                               UNION ALL
                               (SELECT {COLS_RESTORED} FROM fetchq_data.copy__docs EXCEPT ALL SELECT {COLS} FROM fetchq_data.src__docs)) d"
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(diff, 0, "every field of every document restored");
    let due: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fetchq_data.copy__docs c JOIN fetchq_data.src__docs s USING (subject)
         WHERE s.status = 2 AND c.status = 1 AND c.lease_token IS NULL AND c.next_iteration <= now()",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(due, 20_000, "active documents are pending and due");
    let settings_diff: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fetchq.queues a, fetchq.queues b WHERE a.name = 'src' AND b.name = 'copy'
           AND (to_jsonb(a) - 'id' - 'name') <> (to_jsonb(b) - 'id' - 'name')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(settings_diff, 0, "every setting restored");
    let logs_diff: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ((SELECT created_at, subject, message, details, ref_id FROM fetchq_data.src__logs
                                EXCEPT ALL SELECT created_at, subject, message, details, ref_id FROM fetchq_data.copy__logs)
                               UNION ALL (SELECT created_at, subject, message, details, ref_id FROM fetchq_data.copy__logs
                                EXCEPT ALL SELECT created_at, subject, message, details, ref_id FROM fetchq_data.src__logs)) d",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(logs_diff, 0, "every log entry restored");
    let snaps: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM fetchq_data.src__metrics), (SELECT count(*) FROM fetchq_data.copy__metrics)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(snaps.0, snaps.1);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.jobs WHERE queue = 'copy'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 3, "the restored queue has its maintenance jobs");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT replace(indexdef, 'copy__', 'src__') FROM pg_indexes WHERE tablename = 'copy__docs'
         EXCEPT SELECT indexdef FROM pg_indexes WHERE tablename = 'src__docs'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        indexes.is_empty(),
        "the indexes of the restored table are the engine's: {indexes:?}"
    );
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'copy__docs'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(count, 5, "the primary key and the four partial indexes");
    let real = db.client.metric_compute("copy").await.unwrap();
    let counters = db.client.metric_get_common("copy").await.unwrap();
    assert_eq!(counters.total, real.total);
    assert_eq!(counters.pending, real.pending);
    assert_eq!(real.pending, 20_000 + 20_000);
    assert_eq!(
        common::table_hash(&db.pool, "fetchq_data.other__docs").await,
        before_other
    );
}
