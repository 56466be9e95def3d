//! A bad file (truncated, corrupted, altered, wrong version, garbage) or a
//! refused option leaves the database exactly as it was, with a typed error.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Cursor, Write};

use common::{dump_bytes, fill, fingerprint, plain, reseal};
use fetchq_backup::{Compression, DumpOptions, Error, OnConflict, RestoreOptions};
use fetchq_testing::TestDb;

async fn refused(db: &TestDb, file: Vec<u8>, opts: &RestoreOptions) -> Error {
    let before = fingerprint(&db.pool).await;
    let err = fetchq_backup::restore(&db.pool, opts, Cursor::new(file))
        .await
        .expect_err("the restore must fail");
    assert_eq!(
        fingerprint(&db.pool).await,
        before,
        "database changed by a failed restore ({err})"
    );
    // the pool still works
    sqlx::query("SELECT 1").execute(&db.pool).await.unwrap();
    err
}

fn rename() -> RestoreOptions {
    RestoreOptions::default().rename("copy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_truncated_and_foreign_files_change_nothing() {
    let db = TestDb::new().await;
    fill(&db.pool, "src", 3000).await;
    let text = dump_bytes(
        &db.pool,
        &plain(&["src"]).include_logs(true).include_metrics(true),
    )
    .await;
    let zst = dump_bytes(&db.pool, &DumpOptions::queues(["src"]).include_logs(true)).await;
    let gz = dump_bytes(
        &db.pool,
        &DumpOptions::queues(["src"]).compression(Compression::Gzip),
    )
    .await;

    // the untouched files restore (so the failures below are the damage's)
    for (i, file) in [&text, &zst, &gz].into_iter().enumerate() {
        let opts = RestoreOptions::default().rename(format!("ok{i}"));
        fetchq_backup::restore(&db.pool, &opts, Cursor::new(file.clone()))
            .await
            .unwrap();
    }

    // a letter of a document changed in the plain file: the checksum says so
    let pos = text.windows(6).position(|w| w == b"\"s1234").unwrap() + 2;
    let mut altered = text.clone();
    altered[pos] = b'9';
    assert!(matches!(
        refused(&db, altered, &rename()).await,
        Error::ChecksumMismatch { .. }
    ));

    // a payload value changed into invalid JSON: the file is blamed, not the database
    let pos = text.windows(4).position(|w| w == b"\"i\":").unwrap() + 5;
    let mut broken = text.clone();
    broken[pos] = b'x';
    let err = refused(&db, broken, &rename()).await;
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");

    // a byte flipped anywhere in every encoding
    for file in [&text, &zst, &gz] {
        for at in [
            file.len() / 7,
            file.len() / 3,
            file.len() / 2,
            file.len() * 9 / 10,
            file.len() - 3,
        ] {
            let mut bad = file.clone();
            bad[at] ^= 0x20;
            refused(&db, bad, &rename()).await;
        }
    }

    // cut at several points
    for file in [&text, &zst, &gz] {
        for at in [
            1,
            10,
            file.len() / 4,
            file.len() / 2,
            file.len() - 40,
            file.len() - 1,
        ] {
            let err = refused(&db, file[..at].to_vec(), &rename()).await;
            assert!(
                matches!(
                    err,
                    Error::Truncated(_) | Error::Read(_) | Error::NotADump(_) | Error::Corrupt(_)
                ),
                "cut at {at}: {err}"
            );
        }
    }
    // the plain file without its trailer is truncated
    let last = text[..text.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    assert!(matches!(
        refused(&db, text[..last].to_vec(), &rename()).await,
        Error::Truncated(_)
    ));
    // a line removed (a whole document) with the checksum recomputed is still caught
    let mut lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    lines.remove(5);
    let body: Vec<u8> = lines[..lines.len() - 1].concat();
    let err = refused(&db, body, &rename()).await;
    assert!(
        matches!(err, Error::Truncated(_) | Error::Corrupt(_)),
        "{err}"
    );

    // a duplicated subject, resealed with a right checksum: refused by the
    // database (primary key), nothing changes
    let dup = String::from_utf8(text.clone())
        .unwrap()
        .replacen("[\"s12\",", "[\"s13\",", 1);
    assert_ne!(dup.as_bytes(), &text[..]);
    let err = refused(&db, reseal(dup.as_bytes()), &rename()).await;
    assert!(matches!(err, Error::Database(_)), "{err}");
    // a status the engine does not know, resealed
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"[\"s12\","))
        .unwrap();
    let mut fields: Vec<serde_json::Value> = serde_json::from_slice(line).unwrap();
    fields[3] = serde_json::json!(7);
    let odd = String::from_utf8(text.clone()).unwrap().replacen(
        std::str::from_utf8(line).unwrap(),
        &serde_json::to_string(&fields).unwrap(),
        1,
    );
    let err = refused(&db, reseal(odd.as_bytes()), &rename()).await;
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("invalid document")),
        "{err}"
    );
    // values the binary COPY tuples cannot hold, resealed: a date that does
    // not exist, a timestamp without its zone, a bad uuid, an integer out of
    // range, a number where a timestamp goes
    for (col, value) in [
        (6, serde_json::json!("2026-02-30T00:00:00+00:00")),
        (7, serde_json::json!("2026-01-01T00:00:00")),
        (9, serde_json::json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1")),
        (2, serde_json::json!(2_147_483_648_i64)),
        (8, serde_json::json!(12)),
    ] {
        let mut fields: Vec<serde_json::Value> = serde_json::from_slice(line).unwrap();
        fields[col] = value;
        let odd = String::from_utf8(text.clone()).unwrap().replacen(
            std::str::from_utf8(line).unwrap(),
            &serde_json::to_string(&fields).unwrap(),
            1,
        );
        let err = refused(&db, reseal(odd.as_bytes()), &rename()).await;
        assert!(
            matches!(&err, Error::Corrupt(m) if m.contains("invalid document")),
            "column {col}: {err}"
        );
    }
    // keys the documents table cannot hold or the engine refuses, resealed:
    // 256 characters, empty, not a string
    for (value, why) in [
        (serde_json::json!("k".repeat(256)), "256 characters long"),
        (serde_json::json!("é".repeat(256)), "256 characters long"),
        (serde_json::json!(""), "empty"),
        (serde_json::json!(12), "not a string"),
        (serde_json::json!(["k"]), "not a string"),
        (serde_json::json!({"k": 1}), "not a string"),
        (serde_json::json!(true), "not a string"),
    ] {
        let mut fields: Vec<serde_json::Value> = serde_json::from_slice(line).unwrap();
        assert_eq!(fields.len(), 12);
        fields[11] = value.clone();
        let odd = String::from_utf8(text.clone()).unwrap().replacen(
            std::str::from_utf8(line).unwrap(),
            &serde_json::to_string(&fields).unwrap(),
            1,
        );
        let err = refused(&db, reseal(odd.as_bytes()), &rename()).await;
        assert!(
            matches!(&err, Error::Corrupt(m) if m.contains("invalid document key") && m.contains(why)),
            "key {value}: {err}"
        );
    }
    // a document line of 11 columns in a version 2 file
    let mut fields: Vec<serde_json::Value> = serde_json::from_slice(line).unwrap();
    fields.pop();
    let short = String::from_utf8(text.clone()).unwrap().replacen(
        std::str::from_utf8(line).unwrap(),
        &serde_json::to_string(&fields).unwrap(),
        1,
    );
    let err = refused(&db, reseal(short.as_bytes()), &rename()).await;
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("11 columns instead of 12")),
        "{err}"
    );

    // data after the trailer
    let mut longer = text.clone();
    longer.extend_from_slice(b"[\"extra\"]\n");
    assert!(matches!(
        refused(&db, longer, &rename()).await,
        Error::Corrupt(_)
    ));

    // another format version: newer, and 0 (none before version 1)
    for (version, found) in [("3", 3), ("0", 0), ("\"2\"", 0)] {
        let newer = String::from_utf8(text.clone()).unwrap().replacen(
            "\"format_version\":2",
            &format!("\"format_version\":{version}"),
            1,
        );
        let err = refused(&db, newer.into_bytes(), &rename()).await;
        assert!(
            matches!(err, Error::UnsupportedVersion { found: f, supported: 2 } if f == found),
            "{version}: {err}"
        );
    }
    // a version 2 header that says version 1 (its lines have 12 columns)
    let older = String::from_utf8(text.clone()).unwrap().replacen(
        "\"format_version\":2",
        "\"format_version\":1",
        1,
    );
    let err = refused(&db, reseal(older.as_bytes()), &rename()).await;
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("document columns")),
        "{err}"
    );
    let mut zst_newer = Vec::new();
    let newer = String::from_utf8(text.clone()).unwrap().replacen(
        "\"format_version\":2",
        "\"format_version\":9",
        1,
    );
    let mut enc = zstd::Encoder::new(&mut zst_newer, 3).unwrap();
    enc.write_all(newer.as_bytes()).unwrap();
    enc.finish().unwrap();
    assert!(matches!(
        refused(&db, zst_newer, &rename()).await,
        Error::UnsupportedVersion { found: 9, .. }
    ));

    // garbage, empty, another JSON file
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(matches!(
        refused(&db, garbage, &rename()).await,
        Error::NotADump(_)
    ));
    assert!(matches!(
        refused(&db, Vec::new(), &rename()).await,
        Error::NotADump(_)
    ));
    assert!(matches!(
        refused(&db, b"{\"hello\": 1}\n".to_vec(), &rename()).await,
        Error::NotADump(_)
    ));
    assert!(matches!(
        refused(&db, b"[1,2,3]\n".to_vec(), &rename()).await,
        Error::NotADump(_)
    ));

    // the schema of the file is newer than the database's
    let future = String::from_utf8(text.clone()).unwrap();
    let schema = future
        .split("\"schema_version\":")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let future = future.replacen(
        &format!("\"schema_version\":{schema}"),
        "\"schema_version\":999",
        1,
    );
    assert!(matches!(
        refused(&db, future.into_bytes(), &rename()).await,
        Error::SchemaTooNew { file: 999, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_modes() {
    let db = TestDb::new().await;
    fill(&db.pool, "src", 500).await;
    let file = dump_bytes(&db.pool, &plain(&["src"])).await;

    // fail (the default): nothing changes
    let err = refused(&db, file.clone(), &RestoreOptions::default()).await;
    assert!(matches!(&err, Error::QueueExists(q) if q == "src"), "{err}");

    // the live queue moves on: a document deleted, one changed, one added, a setting changed
    sqlx::raw_sql(
        "DELETE FROM fetchq_data.src__docs WHERE subject = 's1';
         UPDATE fetchq_data.src__docs SET payload = '{\"changed\": true}' WHERE subject = 's2';
         INSERT INTO fetchq_data.src__docs (subject, status) VALUES ('new', 1);
         UPDATE fetchq.queues SET max_attempts = 2 WHERE name = 'src';",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let payload = |s: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<serde_json::Value>>(
                "SELECT payload FROM fetchq_data.src__docs WHERE subject = $1",
            )
            .bind(s)
            .fetch_optional(&pool)
            .await
            .unwrap()
            .flatten()
        }
    };
    let max_attempts = || {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>(
                "SELECT max_attempts FROM fetchq.queues WHERE name = 'src'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    // skip: the missing document comes back, the changed one and the settings stay
    let s = fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default().on_conflict(OnConflict::Skip),
        Cursor::new(file.clone()),
    )
    .await
    .unwrap();
    assert_eq!(s.queues[0].docs_written, 1);
    assert!(!s.queues[0].created);
    assert!(payload("s1").await.is_some());
    assert_eq!(payload("s2").await.unwrap()["changed"], true);
    assert!(payload("new").await.is_some());
    assert_eq!(max_attempts().await, 2);

    // replace: the file's documents and settings win, other documents stay
    let s = fetchq_backup::restore(
        &db.pool,
        &RestoreOptions::default().on_conflict(OnConflict::Replace),
        Cursor::new(file.clone()),
    )
    .await
    .unwrap();
    assert_eq!(s.queues[0].docs_written, 500);
    assert_eq!(payload("s2").await.unwrap()["i"], 2);
    assert!(payload("new").await.is_some());
    assert_eq!(max_attempts().await, 7);
    let real = db.client.metric_compute("src").await.unwrap();
    let counters = db.client.metric_get_common("src").await.unwrap();
    assert_eq!(
        (counters.total, counters.pending, counters.active),
        (real.total, real.pending, real.active)
    );
    assert_eq!(real.total, 501);

    // --queue with a file of two queues is refused
    fill(&db.pool, "second", 10).await;
    let two = dump_bytes(&db.pool, &plain(&["src", "second"])).await;
    assert!(matches!(
        refused(&db, two.clone(), &rename()).await,
        Error::InvalidArgument(_)
    ));
    // a multi-queue file where the second queue conflicts: the first is not restored either
    sqlx::query("SELECT fetchq.queue_drop('src')")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(
        matches!(refused(&db, two, &RestoreOptions::default()).await, Error::QueueExists(q) if q == "second")
    );
    // a bad target name
    let err = refused(&db, file, &RestoreOptions::default().rename("Bad Name")).await;
    assert!(matches!(err, Error::Fetchq(_)), "{err}");
}

#[tokio::test]
async fn dump_of_unknown_queue_or_bad_name_fails() {
    let db = TestDb::new().await;
    let err = fetchq_backup::dump(&db.pool, &DumpOptions::queues(["nope"]), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Fetchq(fetchq_core::Error::QueueNotFound { .. })),
        "{err}"
    );
    let err = fetchq_backup::dump(&db.pool, &DumpOptions::queues(["a\"; drop"]), Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fetchq(_)), "{err}");
    // --all of a database without queues is a valid, empty dump
    let s = fetchq_backup::dump(&db.pool, &DumpOptions::all(), Vec::new())
        .await
        .unwrap();
    assert!(s.header.queues.is_empty());
}
