//! Format version 2: version 1 files still restore (keys NULL), dumps of
//! older schemas (no key column, no schedules table), and cron schedules:
//! round trip with a rename, name conflicts, a tampered schedule.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use common::{dump_bytes, fill, fingerprint, plain, reseal};
use fetchq_backup::{Error, OnConflict, RestoreOptions};
use fetchq_core::{Client, CronSchedule};
use fetchq_testing::TestDb;
use sqlx::PgPool;

async fn refused(pool: &PgPool, file: Vec<u8>, opts: &RestoreOptions) -> Error {
    let before = fingerprint(pool).await;
    let err = fetchq_backup::restore(pool, opts, Cursor::new(file))
        .await
        .expect_err("the restore must fail");
    assert_eq!(
        fingerprint(pool).await,
        before,
        "database changed by a failed restore ({err})"
    );
    err
}

/// A plain version 2 dump made a version 1 one, as the previous build wrote
/// it: no key column, no schedules.
fn to_version_1(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_docs = false;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap();
        if body.starts_with(br#"{"section""#) {
            in_docs = body.starts_with(br#"{"section":"docs""#);
        }
        if body.starts_with(b"[") && in_docs {
            let mut cols: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
            assert_eq!(cols.len(), 12);
            cols.pop();
            out.extend_from_slice(&serde_json::to_vec(&cols).unwrap());
        } else if body.starts_with(br#"{"format""#) {
            let mut h: serde_json::Value = serde_json::from_slice(body).unwrap();
            h["format_version"] = 1.into();
            h["doc_columns"].as_array_mut().unwrap().pop();
            for q in h["queues"].as_array_mut().unwrap() {
                q.as_object_mut().unwrap().remove("schedules");
            }
            out.extend_from_slice(&serde_json::to_vec(&h).unwrap());
        } else {
            out.extend_from_slice(body);
        }
        out.push(b'\n');
    }
    reseal(&out)
}

async fn keys(pool: &PgPool, queue: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as(&format!(
        "SELECT subject::text, key::text FROM fetchq_data.{queue}__docs ORDER BY subject"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_restores_with_null_keys() {
    let db = TestDb::new().await;
    fill(&db.pool, "src", 300).await;
    let v2 = dump_bytes(&db.pool, &plain(&["src"]).include_logs(true)).await;
    let v1 = to_version_1(&v2);
    assert!(String::from_utf8_lossy(&v1).contains("\"format_version\":1"));
    let s = fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default().rename("copy"),
        Cursor::new(v1),
    )
    .await
    .unwrap();
    assert_eq!(s.queues[0].docs_written, 300);
    assert_eq!(s.queues[0].schedules_in_file, 0);
    let src = keys(&db.pool, "src").await;
    assert!(src.iter().filter(|(_, k)| k.is_some()).count() > 150);
    let copy = keys(&db.pool, "copy").await;
    assert_eq!(copy.len(), 300);
    assert!(
        copy.iter().all(|(_, k)| k.is_none()),
        "a v1 file has no key"
    );
    // the other columns are the file's
    let same = |q: &str| {
        format!(
            "(SELECT md5(string_agg(concat_ws('|', subject, version, priority, attempts, payload::text), ',' ORDER BY subject)) FROM fetchq_data.{q}__docs)"
        )
    };
    let equal: bool = sqlx::query_scalar(&format!("SELECT {} = {}", same("src"), same("copy")))
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(equal);

    // the tiny fixture under tests/ (as the version 1 build wrote it, schema 16)
    let fixture = include_bytes!("fixtures/v1_schema16.fqdump").to_vec();
    let s = fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default().rename("fixture"),
        Cursor::new(fixture),
    )
    .await
    .unwrap();
    assert_eq!(s.header.format_version, 1);
    assert_eq!(s.queues[0].docs_written, 2);
    assert_eq!(
        keys(&db.pool, "fixture").await,
        vec![("a@x".to_owned(), None), ("b\t\"y\"".to_owned(), None)]
    );
    // a version 1 file with schedules is not one the previous build wrote
    let v2_text = String::from_utf8(dump_bytes(&db.pool, &plain(&["src"])).await).unwrap();
    let mut v1 = String::from_utf8(to_version_1(v2_text.as_bytes())).unwrap();
    v1 = v1.replacen(
        "\"metrics\":null",
        "\"metrics\":null,\"schedules\":[{\"name\":\"n\",\"cron\":\"@daily\",\"time_zone\":\"UTC\",\"subject\":\"s\",\"payload\":{},\"version\":0,\"priority\":0}]",
        1,
    );
    let err = refused(
        &db.pool,
        reseal(v1.as_bytes()),
        &RestoreOptions::default().rename("copy9"),
    )
    .await;
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("format version 1")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumps_of_schema_16_and_17_databases() {
    let db = TestDb::new().await;
    for version in [16, 17] {
        let old = db.database_at(version).await;
        sqlx::query("SELECT fetchq.queue_create('old')")
            .execute(&old)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO fetchq_data.old__docs (subject, status, payload) \
             SELECT 'd' || i, 1, jsonb_build_object('i', i) FROM generate_series(1, 20) AS i",
        )
        .execute(&old)
        .await
        .unwrap();
        if version >= 17 {
            sqlx::query(
                "UPDATE fetchq_data.old__docs SET key = 'k' || (right(subject, 1)::int % 3)",
            )
            .execute(&old)
            .await
            .unwrap();
        }
        let (file, summary) = fetchq_backup::dump_into(&old, &plain(&["old"]), Vec::new())
            .await
            .unwrap();
        assert_eq!(summary.header.schema_version, version);
        assert_eq!(summary.header.format_version, 2);
        assert!(summary.header.queues[0].schedules.is_empty());
        let text = String::from_utf8(file.clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| l.starts_with('['))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 20);
        assert!(lines.iter().all(|l| l.as_array().unwrap().len() == 12));
        assert_eq!(
            lines.iter().filter(|l| l[11].is_null()).count(),
            if version >= 17 { 0 } else { 20 }
        );
        let target = format!("from{version}");
        fetchq_backup::restore(
            &db.pool,
            &RestoreOptions::default().rename(&target),
            Cursor::new(file),
        )
        .await
        .unwrap();
        let restored = keys(&db.pool, &target).await;
        assert_eq!(restored.len(), 20);
        if version >= 17 {
            assert_eq!(restored, keys(&old, "old").await);
        } else {
            assert!(restored.iter().all(|(_, k)| k.is_none()));
        }
        old.close().await;
    }
}

fn schedule(name: &str, cron: &str, queue: &str) -> CronSchedule {
    CronSchedule::new(name, cron)
        .time_zone("Europe/Stockholm")
        .queue(queue)
        .subject(format!("{name}-doc"))
        .payload(serde_json::json!({"from": name, "q": "\"\\\t"}))
        .version(1)
        .priority(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_round_trip_with_a_rename_and_fire_from_their_next_tick() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("src").await.unwrap();
    c.queue_create("other").await.unwrap();
    c.schedule_set(&schedule("nightly", "0 3 * * *", "src"))
        .await
        .unwrap();
    c.schedule_set(&schedule("hourly", "0 * * * *", "src"))
        .await
        .unwrap();
    c.schedule_set(&schedule("elsewhere", "@daily", "other"))
        .await
        .unwrap();
    // the source's state: fired before, a tick missed two hours ago
    sqlx::query(
        "UPDATE fetchq.schedules SET ticks = 5, last_tick_at = now() - interval '3 hours', \
         next_tick_at = now() - interval '2 hours'",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let (file, summary) = fetchq_backup::dump_into(&db.pool, &plain(&["src"]), Vec::new())
        .await
        .unwrap();
    let names: Vec<&str> = summary.header.queues[0]
        .schedules
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["hourly", "nightly"]);

    // into another database, renamed
    let empty = db.create_empty_database().await;
    let pool2 = db.pool_on(&empty, 4).await;
    fetchq_core::migrate(&pool2).await.unwrap();
    let c2 = Client::new(pool2.clone());
    let restored = fetchq_backup::restore(
        &pool2,
        &RestoreOptions::default().rename("copy"),
        Cursor::new(file),
    )
    .await
    .unwrap();
    assert_eq!(restored.queues[0].schedules_in_file, 2);
    assert_eq!(restored.queues[0].schedules_written, 2);
    let list = c2.schedule_list().await.unwrap();
    assert_eq!(list.len(), 2);
    for s in &list {
        let want = schedule(&s.name, &s.cron, "copy");
        assert_eq!(
            (
                &s.queue,
                &s.subject,
                &s.payload,
                s.version,
                s.priority,
                s.time_zone.as_str()
            ),
            (
                &want.queue,
                &want.subject,
                &want.payload,
                1,
                4,
                "Europe/Stockholm"
            )
        );
        assert_eq!((s.ticks, s.last_tick_at, s.next_tick_at), (0, None, None));
    }
    assert_eq!(list[0].cron, "0 * * * *");
    assert_eq!(list[1].cron, "0 3 * * *");
    // the next round plans their first tick after now: the missed one is
    // not replayed
    let round = c2.schedule_tick(100).await.unwrap();
    assert_eq!((round.planned, round.fired()), (2, 0));
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&pool2)
        .await
        .unwrap();
    for s in c2.schedule_list().await.unwrap() {
        assert!(s.next_tick_at.unwrap() > now, "{s:?}");
    }
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.copy__docs")
        .fetch_one(&pool2)
        .await
        .unwrap();
    assert_eq!(docs, 0);
    pool2.close().await;
    db.drop_database(&empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_name_conflicts_follow_on_conflict() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("src").await.unwrap();
    c.schedule_set(&schedule("nightly", "0 3 * * *", "src"))
        .await
        .unwrap();
    c.schedule_set(&schedule("hourly", "0 * * * *", "src"))
        .await
        .unwrap();
    let file = dump_bytes(&db.pool, &plain(&["src"])).await;
    // the live schedule changes, the other goes
    c.schedule_set(
        &schedule("nightly", "30 4 * * *", "src").payload(serde_json::json!({"live": true})),
    )
    .await
    .unwrap();
    c.schedule_drop("hourly").await.unwrap();
    let get = |name: &'static str| async move {
        c.schedule_list()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
    };

    // fail: the clash is refused before anything is written
    let err = refused(
        &db.pool,
        file.clone(),
        &RestoreOptions::default().rename("copy"),
    )
    .await;
    assert!(
        matches!(&err, Error::ScheduleExists(n) if n == "nightly"),
        "{err}"
    );
    // a queue that exists is reported first
    let err = refused(&db.pool, file.clone(), &RestoreOptions::default()).await;
    assert!(matches!(&err, Error::QueueExists(q) if q == "src"), "{err}");

    // skip: the existing schedule stays as it is, the missing one is created
    let s = fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default()
            .rename("copy")
            .on_conflict(OnConflict::Skip),
        Cursor::new(file.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        (s.queues[0].schedules_in_file, s.queues[0].schedules_written),
        (2, 1)
    );
    let nightly = get("nightly").await.unwrap();
    assert_eq!(
        (nightly.cron.as_str(), nightly.queue.as_str()),
        ("30 4 * * *", "src")
    );
    assert_eq!(nightly.payload, serde_json::json!({"live": true}));
    assert_eq!(get("hourly").await.unwrap().queue, "copy");

    // replace: the file's schedule overwrites it, targeting the new name
    let s = fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default()
            .rename("copy2")
            .on_conflict(OnConflict::Replace),
        Cursor::new(file.clone()),
    )
    .await
    .unwrap();
    assert_eq!(s.queues[0].schedules_written, 2);
    let nightly = get("nightly").await.unwrap();
    assert_eq!(
        (nightly.cron.as_str(), nightly.queue.as_str()),
        ("0 3 * * *", "copy2")
    );
    assert_eq!(nightly.payload, schedule("nightly", "", "").payload);
    // a changed cron is planned anew
    assert_eq!(nightly.next_tick_at, None);
    assert_eq!(get("hourly").await.unwrap().queue, "copy2");

    // a tampered schedule (a cron that does not parse, resealed) changes nothing
    let text = String::from_utf8(file.clone()).unwrap();
    let bad = text.replacen("\"cron\":\"0 3 * * *\"", "\"cron\":\"61 3 * * *\"", 1);
    assert_ne!(bad, text);
    let err = refused(
        &db.pool,
        reseal(bad.as_bytes()),
        &RestoreOptions::default().rename("copy3"),
    )
    .await;
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("invalid schedule")),
        "{err}"
    );
    // the same name twice
    let twice = text.replacen("\"name\":\"hourly\"", "\"name\":\"nightly\"", 1);
    let err = refused(
        &db.pool,
        reseal(twice.as_bytes()),
        &RestoreOptions::default()
            .rename("copy3")
            .on_conflict(OnConflict::Replace),
    )
    .await;
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("twice")),
        "{err}"
    );
}
