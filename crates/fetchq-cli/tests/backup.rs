//! `fetchq dump` and `fetchq restore`: files, stdout/stdin, summaries, exit
//! codes and messages.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fetchq_core::{NewDoc, PickOptions};
use fetchq_testing::TestDb;
use serde_json::Value;

fn fetchq(url: &str, args: &[&str], input: Option<Vec<u8>>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .args(args)
        .env("DATABASE_URL", url)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("mails").await.unwrap();
    c.queue_create("other").await.unwrap();
    let docs: Vec<NewDoc> = (0..1000).map(|i| NewDoc::new(format!("m{i}"))).collect();
    c.push_many("mails", &docs).await.unwrap();
    c.push("other", &NewDoc::new("o1")).await.unwrap();
    let picked = c
        .pick("mails", &PickOptions::new().limit(10))
        .await
        .unwrap();
    c.reject(&picked[0].lease, "boom", None, None)
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn dump_to_a_file_and_restore_under_a_new_name() {
    let db = setup().await;
    let url = db.url();
    let dir = std::env::temp_dir().join(format!("fetchq-cli-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mails.fqdump");
    let f = file.to_str().unwrap();

    let out = ok(&fetchq(
        &url,
        &["dump", "mails", "-o", f, "--include", "logs,metrics"],
        None,
    ));
    assert!(out.contains("mails: 1000 documents"), "{out}");
    assert!(
        out.contains("9 active documents will be restored as due"),
        "{out}"
    );
    assert!(
        std::fs::read(&file)
            .unwrap()
            .starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "zstd by default"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no partial file left"
    );

    let out = fetchq(
        &url,
        &["restore", f, "--queue", "mails_copy", "--json"],
        None,
    );
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    let q = &v["queues"][0];
    assert_eq!(
        (q["name"].as_str(), q["source"].as_str()),
        (Some("mails_copy"), Some("mails"))
    );
    assert_eq!(q["documents_written"], 1000);
    assert_eq!(q["active_restored_as_due"], 9);
    assert_eq!(q["logs"], 1);
    let c = db.client.metric_compute("mails_copy").await.unwrap();
    assert_eq!((c.total, c.pending, c.active), (1000, 999, 0));

    // the same again: the queue exists now
    let e = err(
        &fetchq(&url, &["restore", f, "--queue", "mails_copy"], None),
        2,
    );
    assert!(e.contains("queue \"mails_copy\" already exists"), "{e}");
    let out = ok(&fetchq(
        &url,
        &[
            "restore",
            f,
            "--queue",
            "mails_copy",
            "--on-conflict",
            "skip",
        ],
        None,
    ));
    assert!(
        out.contains("existing queue, 0 of 1000 documents written"),
        "{out}"
    );

    // damaged files: exit 3, nothing changes
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.fqdump");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = err(
        &fetchq(
            &url,
            &["restore", cut.to_str().unwrap(), "--queue", "cut"],
            None,
        ),
        3,
    );
    assert!(
        e.contains("truncated") || e.contains("cannot read the dump"),
        "{e}"
    );
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, b"hello world\n").unwrap();
    let e = err(
        &fetchq(&url, &["restore", garbage.to_str().unwrap()], None),
        3,
    );
    assert!(e.contains("not a fetchq dump"), "{e}");
    let queues: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.queues")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(queues, 3);

    // a missing file
    let e = err(
        &fetchq(&url, &["restore", dir.join("nope").to_str().unwrap()], None),
        1,
    );
    assert!(e.contains("cannot open"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn dump_to_stdout_and_restore_from_stdin() {
    let db = setup().await;
    let url = db.url();
    let out = fetchq(
        &url,
        &["dump", "--all", "-o", "-", "--compress", "gzip"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.starts_with(&[0x1f, 0x8b]),
        "stdout is only the gzip dump"
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("dumped 2 queue(s) to stdout"), "{summary}");

    // a multi-queue file cannot be renamed
    let e = err(
        &fetchq(
            &url,
            &["restore", "-", "--queue", "x"],
            Some(out.stdout.clone()),
        ),
        2,
    );
    assert!(e.contains("single queue"), "{e}");
    // into another database through stdin
    let empty = db.create_empty_database().await;
    let pool = db.pool_on(&empty, 2).await;
    fetchq_core::migrate(&pool).await.unwrap();
    let url2 = url.replace(&db.name, &empty);
    let text = ok(&fetchq(&url2, &["restore", "-"], Some(out.stdout)));
    assert!(
        text.contains("mails: created, 1000 of 1000 documents written"),
        "{text}"
    );
    assert!(
        text.contains("other: created, 1 of 1 documents written"),
        "{text}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.mails__docs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1000);
    drop(pool);
    db.drop_database(&empty).await;
}

#[tokio::test]
async fn dump_refusals_and_errors() {
    let db = setup().await;
    let url = db.url();
    let e = err(&fetchq(&url, &["dump", "-o", "-"], None), 2);
    assert!(e.contains("--all"), "{e}");
    let out = fetchq(&url, &["dump", "nope", "-o", "-"], None);
    let e = err(&out, 1);
    assert!(e.contains("nope"), "{e}");
    assert!(
        out.stdout.is_empty() || !out.stdout.ends_with(b"}\n"),
        "no trailer written for a failed dump"
    );
    let e = err(
        &fetchq(
            &url,
            &["dump", "mails", "-o", "/nonexistent-dir/x.fqdump"],
            None,
        ),
        1,
    );
    assert!(e.contains("cannot create"), "{e}");
    let e = err(
        &fetchq(
            &url,
            &["dump", "mails", "-o", "-", "--compress", "lz4"],
            None,
        ),
        2,
    );
    assert!(e.contains("lz4"), "{e}");
    let e = err(
        &fetchq(
            &url,
            &["restore", "-", "--on-conflict", "merge"],
            Some(Vec::new()),
        ),
        2,
    );
    assert!(e.contains("merge"), "{e}");
}

#[tokio::test]
async fn older_read_commands_print_json() {
    let db = setup().await;
    let url = db.url();
    let info: Value = serde_json::from_str(&ok(&fetchq(&url, &["info", "--json"], None))).unwrap();
    assert_eq!(info["schema_version"], fetchq_core::latest_schema_version());
    assert!(info["version"].as_str().unwrap().starts_with("5."));
    let list: Value =
        serde_json::from_str(&ok(&fetchq(&url, &["queue", "list", "--json"], None))).unwrap();
    let names: Vec<&str> = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mails", "other"]);
    assert_eq!(list["queues"][0]["max_attempts"], 5);
    assert_eq!(list["queues"][0]["paused"], false);
    let m: Value =
        serde_json::from_str(&ok(&fetchq(&url, &["metrics", "mails", "--json"], None))).unwrap();
    assert_eq!(
        (
            m["total"].as_i64(),
            m["active"].as_i64(),
            m["rejected"].as_i64()
        ),
        (Some(1000), Some(9), Some(1))
    );
    // the text forms are unchanged
    assert!(ok(&fetchq(&url, &["info"], None)).starts_with("fetchq 5."));
    assert!(ok(&fetchq(&url, &["queue", "list"], None)).contains("mails\tactive"));
    let e = err(&fetchq(&url, &["metrics", "nope", "--json"], None), 1);
    assert!(e.contains("nope"), "{e}");
}

#[tokio::test]
async fn schedules_go_with_their_queue() {
    let db = setup().await;
    let url = db.url();
    db.client
        .schedule_set(&fetchq_core::CronSchedule::new("mails-nightly", "0 3 * * *").queue("mails"))
        .await
        .unwrap();
    db.client
        .schedule_set(&fetchq_core::CronSchedule::new("other-hourly", "@hourly").queue("other"))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("fetchq-cli-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mails.fqdump");
    let f = file.to_str().unwrap();

    let v: Value = serde_json::from_str(&ok(&fetchq(
        &url,
        &["dump", "mails", "-o", f, "--json"],
        None,
    )))
    .unwrap();
    assert_eq!(
        v["queues"][0]["schedules"],
        serde_json::json!(["mails-nightly"])
    );
    let out = ok(&fetchq(&url, &["dump", "mails", "-o", f], None));
    assert!(out.contains(", 1 schedules"), "{out}");

    // the schedule's name exists in this database: a refusal (exit 2)
    let e = err(&fetchq(&url, &["restore", f, "--queue", "copy"], None), 2);
    assert!(
        e.contains("schedule \"mails-nightly\" already exists"),
        "{e}"
    );
    assert!(
        !db.client
            .queue_list()
            .await
            .unwrap()
            .iter()
            .any(|q| q.name == "copy")
    );
    // skip keeps it
    let out = ok(&fetchq(
        &url,
        &["restore", f, "--queue", "copy", "--on-conflict", "skip"],
        None,
    ));
    assert!(
        out.contains("copy: 0 of 1 schedules written (the others exist and were kept)"),
        "{out}"
    );
    // replace moves it to the restored queue
    let v: Value = serde_json::from_str(&ok(&fetchq(
        &url,
        &[
            "restore",
            f,
            "--queue",
            "copy2",
            "--on-conflict",
            "replace",
            "--json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(v["queues"][0]["schedules_written"], 1);
    let list = db.client.schedule_list().await.unwrap();
    let nightly = list.iter().find(|s| s.name == "mails-nightly").unwrap();
    assert_eq!(nightly.queue, "copy2");
    let _ = std::fs::remove_dir_all(&dir);
}
