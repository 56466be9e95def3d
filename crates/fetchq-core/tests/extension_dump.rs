//! `pg_dump` / `pg_restore` of a database that uses `CREATE EXTENSION fetchq`:
//! the restore succeeds and gives back the queues, their documents, their
//! maintenance jobs, counters and id sequences (issue 14).

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::process::Command;

use fetchq_core::{Client, NewDoc, PickOptions, extension};
use fetchq_testing::{TestDb, test_cluster};

fn url_of(db: &TestDb, database: &str) -> String {
    // libpq does not know sqlx's URL parameters
    let url = db.url();
    let url = url.split('?').next().unwrap_or(&url).to_owned();
    url.replace(&db.name, database)
}

async fn state(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar::<_, String>(
        r#"SELECT concat_ws(E'\n',
             (SELECT string_agg(to_jsonb(q)::text, ',' ORDER BY name) FROM fetchq.queues q),
             (SELECT string_agg(format('%s/%s/%s/%s', id, task, queue, settings), ',' ORDER BY task, queue) FROM fetchq.jobs),
             (SELECT string_agg(format('%s/%s/%s', queue, metric, value), ',' ORDER BY queue, metric) FROM fetchq.metrics),
             (SELECT string_agg(format('%s/%s', version, name), ',' ORDER BY version) FROM fetchq.migrations),
             (SELECT string_agg(format('%s/%s/%s/%s/%s/%s/%s', name, cron, time_zone, queue, subject, payload, next_tick_at), ',' ORDER BY name) FROM fetchq.schedules),
             (SELECT md5(string_agg(d::text, ',' ORDER BY subject)) FROM fetchq_data.ext_a__docs d),
             (SELECT count(*) FROM fetchq_data.ext_a__logs),
             (SELECT md5(string_agg(d::text, ',' ORDER BY subject)) FROM fetchq_data.ext_b__docs d))"#,
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn pg_dump_and_pg_restore_of_an_extension_database() {
    let db = TestDb::new().await;
    let cluster = test_cluster();
    let dir = cluster.extension_dir().expect("pg_config --sharedir");
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
    let source = db.create_empty_database().await;
    let pool = db.pool_on(&source, 2).await;
    sqlx::raw_sql("CREATE EXTENSION fetchq")
        .execute(&pool)
        .await
        .unwrap();
    let client = Client::new(pool.clone());
    for q in ["ext_a", "ext_b"] {
        client.queue_create(q).await.unwrap();
    }
    let docs: Vec<NewDoc> = (0..500)
        .map(|i| NewDoc::new(format!("d{i}")).version(i % 2))
        .collect();
    client.push_many("ext_a", &docs).await.unwrap();
    client.push("ext_b", &NewDoc::new("b1")).await.unwrap();
    // schedules are configuration: kept by pg_dump like the queues
    for (name, cron) in [("nightly", "30 2 * * *"), ("hourly", "@hourly")] {
        client
            .schedule_set(
                &fetchq_core::CronSchedule::new(name, cron)
                    .tz("Europe/Stockholm")
                    .queue("ext_a")
                    .payload(serde_json::json!({"n": name})),
            )
            .await
            .unwrap();
    }
    client.schedule_tick(10).await.unwrap();
    let picked = client
        .pick("ext_a", &PickOptions::new().limit(20))
        .await
        .unwrap();
    client
        .reject(&picked[0].lease, "boom", None, None)
        .await
        .unwrap();
    client.complete(&picked[1].lease, None).await.unwrap();
    client.mnt().await.unwrap();
    client.metric_log_pack().await.unwrap();
    let before = state(&pool).await;

    let file = std::env::temp_dir().join(format!("{source}.pgdump"));
    let bin = cluster.bin_dir().to_path_buf();
    let out = Command::new(bin.join("pg_dump"))
        .args([
            "-Fc",
            "-f",
            file.to_str().unwrap(),
            "-d",
            &url_of(&db, &source),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let target = db.create_empty_database().await;
    let out = Command::new(bin.join("pg_restore"))
        .args([
            "--exit-on-error",
            "-d",
            &url_of(&db, &target),
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pool2 = db.pool_on(&target, 2).await;
    assert_eq!(
        state(&pool2).await,
        before,
        "queues, jobs, counters, migrations and documents restored"
    );
    let client2 = Client::new(pool2.clone());
    let schedules = client2.schedule_list().await.unwrap();
    assert_eq!(schedules.len(), 2, "schedules restored");
    assert!(schedules.iter().all(|s| s.next_tick_at.is_some()));
    for q in ["ext_a", "ext_b"] {
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.jobs WHERE queue = $1")
            .bind(q)
            .fetch_one(&pool2)
            .await
            .unwrap();
        assert_eq!(jobs, 3, "maintenance jobs of {q}");
        let real = client2.metric_compute(q).await.unwrap();
        let c = client2.metric_get_common(q).await.unwrap();
        assert_eq!(
            (c.total, c.pending, c.active, c.completed),
            (real.total, real.pending, real.active, real.completed)
        );
    }
    // the id sequences came along: new rows do not collide
    client2.queue_create("ext_c").await.unwrap();
    client2.push("ext_c", &NewDoc::new("c1")).await.unwrap();
    let picked = client2
        .pick("ext_a", &PickOptions::new().limit(5))
        .await
        .unwrap();
    assert_eq!(picked.len(), 5);
    client2
        .reject(&picked[0].lease, "again", None, None)
        .await
        .unwrap();
    client2.mnt().await.unwrap();
    // the restored database is still current for the migrator
    assert!(
        fetchq_core::migrate(&pool2)
            .await
            .unwrap()
            .applied
            .is_empty()
    );

    pool.close().await;
    pool2.close().await;
    db.drop_database(&source).await;
    db.drop_database(&target).await;
}
