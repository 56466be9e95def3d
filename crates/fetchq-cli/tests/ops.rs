//! The operator's commands (status, docs, doc, logs, trace, queue set, push)
//! of the `fetchq` binary against a real database.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fetchq_core::{NewDoc, Status};
use fetchq_testing::TestDb;
use serde_json::Value;

fn fetchq(url: &str, args: &[&str]) -> Output {
    fetchq_stdin(url, args, None)
}

fn fetchq_stdin(url: &str, args: &[&str], input: Option<&[u8]>) -> Output {
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
        let input = input.to_vec();
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

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn err(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn connection_refused_fails_fast_with_the_address() {
    let started = Instant::now();
    let out = fetchq("postgres://fetchq:x@127.0.0.1:1/nothing", &["status"]);
    let e = err(&out, 1);
    assert!(e.contains("connection refused at 127.0.0.1:1"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn status_docs_and_doc_actions() {
    let db = TestDb::new().await;
    let url = db.url();
    let c = &db.client;
    c.queue_create("heroes").await.unwrap();
    c.queue_create("villains").await.unwrap();
    c.queue_pause("villains").await.unwrap();
    for s in ["a1", "a2", "a3", "b1"] {
        c.push("heroes", &NewDoc::new(s).version(1)).await.unwrap();
    }
    c.force_kill("heroes", "a3").await.unwrap();

    let st = json(&fetchq(&url, &["status", "--json"]));
    let qs = st["queues"].as_array().unwrap();
    let heroes = qs.iter().find(|q| q["name"] == "heroes").unwrap();
    assert_eq!(
        (
            heroes["total"].as_i64(),
            heroes["pending"].as_i64(),
            heroes["dead"].as_i64()
        ),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(heroes["paused"], false);
    let villains = qs.iter().find(|q| q["name"] == "villains").unwrap();
    assert_eq!(villains["paused"], true);
    let table = ok(&fetchq(&url, &["status"]));
    assert!(
        table.contains("QUEUE") && table.contains("villains  paused"),
        "{table}"
    );

    // one keyset page, then the next from the printed --after
    let page = json(&fetchq(
        &url,
        &["docs", "heroes", "--prefix", "a", "--limit", "2", "--json"],
    ));
    let subjects: Vec<&str> = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["a1", "a2"]);
    assert_eq!(page["next_after"], "a2");
    let human = ok(&fetchq(
        &url,
        &["docs", "heroes", "--prefix", "a", "--limit", "2"],
    ));
    assert!(human.contains("next page: --after a2"), "{human}");
    let rest = json(&fetchq(
        &url,
        &["docs", "heroes", "--prefix", "a", "--after", "a2", "--json"],
    ));
    assert_eq!(rest["docs"][0]["subject"], "a3");
    assert_eq!(rest["docs"][0]["status"], "dead");
    assert_eq!(rest["next_after"], Value::Null);
    let dead = json(&fetchq(
        &url,
        &["docs", "heroes", "--status", "dead", "--json"],
    ));
    assert_eq!(dead["docs"].as_array().unwrap().len(), 1);
    // negative numbers are values, not flags: the engine answers, not clap
    let neg = err(&fetchq(&url, &["docs", "heroes", "--version", "-1"]), 1);
    assert!(neg.contains("version must be 0 or more"), "{neg}");
    let d = json(&fetchq(&url, &["doc", "get", "heroes", "a1", "--json"]));
    assert_eq!(
        (d["status"].as_str(), d["version"].as_i64()),
        (Some("pending"), Some(1))
    );
    assert!(ok(&fetchq(&url, &["doc", "reschedule", "heroes", "a1", "2d"])).contains("planned"));
    assert_eq!(c.get("heroes", "a1").await.unwrap().status, Status::Planned);
    ok(&fetchq(
        &url,
        &["doc", "reschedule", "heroes", "a1", "2031-01-02T03:04:05Z"],
    ));
    assert_eq!(
        c.get("heroes", "a1")
            .await
            .unwrap()
            .next_iteration
            .to_rfc3339(),
        "2031-01-02T03:04:05+00:00"
    );
    ok(&fetchq(&url, &["doc", "play", "heroes", "a1"]));
    assert_eq!(c.get("heroes", "a1").await.unwrap().status, Status::Pending);
    ok(&fetchq(&url, &["doc", "kill", "heroes", "a1"]));
    assert_eq!(c.get("heroes", "a1").await.unwrap().status, Status::Dead);
    ok(&fetchq(&url, &["doc", "drop", "heroes", "a1"]));
    assert!(c.get("heroes", "a1").await.is_err());

    // bad input
    assert!(err(&fetchq(&url, &["docs", "ghost"]), 1).contains("queue \"ghost\" does not exist"));
    assert!(err(&fetchq(&url, &["doc", "get", "ghost", "x"]), 1).contains("does not exist"));
    assert!(err(&fetchq(&url, &["doc", "get", "heroes", "nobody"]), 1).contains("not found"));
    assert!(
        err(&fetchq(&url, &["docs", "heroes", "--limit", "0"]), 1).contains("invalid argument")
    );
    err(&fetchq(&url, &["docs", "heroes", "--status", "zombie"]), 2);
    err(&fetchq(&url, &["docs", "heroes", "--bogus"]), 2);
    err(
        &fetchq(&url, &["doc", "reschedule", "heroes", "b1", "someday"]),
        2,
    );
    err(
        &fetchq(&url, &["docs", "heroes", "--play", "--drop", "--yes"]),
        2,
    );
}

#[tokio::test]
async fn bulk_counts_refuses_without_yes_and_acts_with_it() {
    let db = TestDb::new().await;
    let url = db.url();
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..1500).map(|i| NewDoc::new(format!("d{i:05}"))).collect();
    c.push_many("q", &docs).await.unwrap();
    let kill = fetchq_core::DocFilter::new().subject_prefix("d00");
    c.bulk("q", &kill, fetchq_core::BulkAction::Kill, 1000)
        .await
        .unwrap(); // d00000..d00999

    // no TTY, no --yes: refused, nothing changed
    let out = fetchq(&url, &["docs", "q", "--status", "dead", "--play"]);
    let e = err(&out, 2);
    assert!(e.contains("1000 documents") && e.contains("--yes"), "{e}");
    assert_eq!(c.metric_compute("q").await.unwrap().dead, 1000);

    let out = ok(&fetchq(
        &url,
        &["docs", "q", "--status", "dead", "--play", "--yes"],
    ));
    assert!(out.contains("played 1000 documents"), "{out}");
    let counts = c.metric_compute("q").await.unwrap();
    assert_eq!((counts.dead, counts.pending), (0, 1500));

    ok(&fetchq(
        &url,
        &[
            "docs",
            "q",
            "--prefix",
            "d01",
            "--reschedule",
            "1h",
            "--yes",
        ],
    ));
    assert_eq!(c.metric_compute("q").await.unwrap().planned, 500);
    ok(&fetchq(
        &url,
        &["docs", "q", "--status", "planned", "--drop", "-y"],
    ));
    assert_eq!(c.metric_compute("q").await.unwrap().total, 1000);
    assert!(
        ok(&fetchq(&url, &["docs", "q", "--status", "dead", "--kill"])).contains("no matching")
    );
    err(&fetchq(&url, &["docs", "ghost", "--play", "--yes"]), 1);
}

#[tokio::test]
async fn push_from_stdin_file_and_jsonl() {
    let db = TestDb::new().await;
    let url = db.url();
    let c = &db.client;
    c.queue_create("q").await.unwrap();

    ok(&fetchq_stdin(
        &url,
        &["push", "q", "s1", "--payload", "-", "--version", "2"],
        Some(br#"{"n": 1}"#),
    ));
    assert_eq!(c.get("q", "s1").await.unwrap().payload["n"], 1);
    let file = std::env::temp_dir().join(format!("fetchq-payload-{}.json", std::process::id()));
    std::fs::write(&file, r#"{"n": 2}"#).unwrap();
    ok(&fetchq(
        &url,
        &["push", "q", "s2", "--payload-file", file.to_str().unwrap()],
    ));
    let _ = std::fs::remove_file(&file);
    assert_eq!(c.get("q", "s2").await.unwrap().payload["n"], 2);
    err(
        &fetchq(
            &url,
            &["push", "q", "s3", "--payload-file", "/nonexistent/x.json"],
        ),
        2,
    );

    let mut input = String::new();
    for i in 0..2500 {
        if i == 2099 {
            input.push_str("{\"subject\": \"bad\", \"priority\": \"high\"}\n");
        } else {
            input.push_str(&format!("{{\"subject\":\"j{i}\",\"payload\":{{\"i\":{i}}},\"priority\":{},\"delay\":\"1h\"}}\n", i % 3));
        }
    }
    let out = fetchq_stdin(&url, &["push", "q", "--jsonl"], Some(input.as_bytes()));
    let e = err(&out, 1);
    assert!(
        e.contains("line 2100") && e.contains("2099 lines before it were pushed"),
        "{e}"
    );
    let counts = c.metric_compute("q").await.unwrap();
    assert_eq!((counts.total, counts.planned), (2 + 2099, 2099));
    let j = c.get("q", "j1234").await.unwrap();
    assert_eq!(
        (j.priority, j.payload["i"].as_i64()),
        (1234 % 3, Some(1234))
    );

    // a clean run: duplicates ignored, new ones counted
    let out = ok(&fetchq_stdin(
        &url,
        &["push", "q", "--jsonl"],
        Some(b"{\"subject\":\"j1\"}\n\n{\"subject\":\"new\",\"delay\":0}\n"),
    ));
    assert!(out.contains("pushed 1 new documents from 3 lines"), "{out}");
    err(
        &fetchq_stdin(
            &url,
            &["push", "ghost", "--jsonl"],
            Some(b"{\"subject\":\"x\"}\n"),
        ),
        1,
    );
    err(&fetchq(&url, &["push", "q"]), 2);
}

#[tokio::test]
async fn logs_trace_and_queue_set() {
    let db = TestDb::new().await;
    let url = db.url();
    let c = &db.client;
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("s")).await.unwrap();
    for i in 0..3 {
        c.log_error(
            "q",
            "s",
            &format!("boom {i}\nsecond line"),
            None,
            Some("w1"),
        )
        .await
        .unwrap();
    }
    c.log_error("q", "other", "elsewhere", None, None)
        .await
        .unwrap();

    let logs = json(&fetchq(
        &url,
        &["logs", "q", "--subject", "s", "--limit", "2", "--json"],
    ));
    let msgs: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["boom 1\nsecond line", "boom 2\nsecond line"]);
    let human = ok(&fetchq(&url, &["logs", "q", "--since", "1h"]));
    assert_eq!(human.lines().count(), 5, "{human}"); // header + 4, newlines escaped
    assert!(err(&fetchq(&url, &["logs", "ghost"]), 1).contains("does not exist"));

    let trace = json(&fetchq(&url, &["trace", "s", "--json"]));
    assert!(trace.as_array().unwrap().len() >= 4, "{trace}");
    assert!(ok(&fetchq(&url, &["trace", "nobody"])).contains("not found"));

    let out = ok(&fetchq(
        &url,
        &[
            "queue",
            "set",
            "q",
            "--max-attempts",
            "7",
            "--logs-retention",
            "48h",
            "--retry-delay",
            "2s",
            "--current-version",
            "3",
        ],
    ));
    assert!(out.contains("max_attempts 7"), "{out}");
    let s = c.queue_status("q").await.unwrap();
    assert_eq!(
        (
            s.max_attempts,
            s.current_version,
            s.logs_retention.as_secs(),
            s.retry_delay.as_secs()
        ),
        (7, 3, 48 * 3600, 2)
    );
    err(&fetchq(&url, &["queue", "set", "q"]), 2);
    err(
        &fetchq(&url, &["queue", "set", "q", "--logs-retention", "soon"]),
        2,
    );
    assert!(
        err(
            &fetchq(&url, &["queue", "set", "ghost", "--max-attempts", "1"]),
            1
        )
        .contains("does not exist")
    );
    // a negative value is a value (the engine refuses it), not an unknown flag
    err(
        &fetchq(&url, &["queue", "set", "q", "--max-attempts", "-1"]),
        1,
    );
}

#[tokio::test]
async fn queue_set_rate_limit_sets_shows_and_removes_it() {
    let db = TestDb::new().await;
    let (c, url) = (&db.client, db.url());
    c.queue_create("q").await.unwrap();
    let out = ok(&fetchq(
        &url,
        &["queue", "set", "q", "--rate-limit", "20/s"],
    ));
    assert!(out.contains("rate_limit 20/1s"), "{out}");
    assert_eq!(
        c.queue_status("q").await.unwrap().rate_limit,
        Some("20/s".parse().unwrap())
    );
    let list = json(&fetchq(&url, &["queue", "list", "--json"]));
    assert_eq!(list["queues"][0]["rate_limit"], "20/1s", "{list}");
    assert!(ok(&fetchq(&url, &["queue", "list"])).contains("rate_limit 20/1s"));
    // bad forms are usage errors (2) and change nothing
    for bad in ["20", "0/s", "20/forever", "x/s", "100001/s"] {
        let msg = err(
            &fetchq(&url, &["queue", "set", "q", "--rate-limit", bad]),
            2,
        );
        assert!(msg.contains("rate"), "{bad}: {msg}");
    }
    assert_eq!(
        c.queue_status("q").await.unwrap().rate_limit,
        Some("20/s".parse().unwrap())
    );
    let out = ok(&fetchq(
        &url,
        &["queue", "set", "q", "--rate-limit", "none"],
    ));
    assert!(out.contains("rate_limit none"), "{out}");
    assert_eq!(c.queue_status("q").await.unwrap().rate_limit, None);
    assert!(
        err(
            &fetchq(&url, &["queue", "set", "ghost", "--rate-limit", "1/s"]),
            1
        )
        .contains("does not exist")
    );
}

#[tokio::test]
async fn status_shows_lag_and_throughput_from_snapshots_or_two_reads() {
    let db = TestDb::new().await;
    let url = db.url();
    let c = &db.client;
    c.queue_create("late").await.unwrap();
    let two_min_ago = chrono::Utc::now() - chrono::Duration::seconds(120);
    let docs: Vec<NewDoc> = (0..40)
        .map(|i| NewDoc::new(format!("d{i}")).at(fetchq_core::Schedule::at(two_min_ago)))
        .collect();
    c.push_many("late", &docs).await.unwrap();
    c.queue_create("quiet").await.unwrap();

    // no snapshot: two reads `--sample` apart while documents are processed
    let worker = {
        let c = c.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                let picked = c
                    .pick("late", &fetchq_core::PickOptions::new().limit(1))
                    .await
                    .unwrap();
                for d in picked {
                    c.complete(&d.lease, None).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        fetchq(&url2, &["status", "--json", "--sample", "1500ms"])
    })
    .await
    .unwrap();
    worker.await.unwrap();
    let st = json(&out);
    let q = |name: &str| {
        st["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap()
            .clone()
    };
    let late = q("late");
    assert!(late["lag_seconds"].as_f64().unwrap() >= 119.0, "{late}");
    assert_eq!(late["throughput_from"], "sample", "{late}");
    assert!(
        late["processed_per_minute"].as_f64().unwrap() > 0.0,
        "{late}"
    );
    let quiet = q("quiet");
    assert_eq!(quiet["lag_seconds"], 0.0);
    assert_eq!(quiet["processed_per_minute"], 0.0);

    // a snapshot two minutes old: the rate since it, with no wait (snapshots
    // copy the packed counters: maintenance packs before)
    c.metric_log_pack().await.unwrap();
    c.metric_snap("late").await.unwrap();
    sqlx::query("UPDATE fetchq_data.late__metrics SET created_at = now() - interval '2 minutes'")
        .execute(&db.pool)
        .await
        .unwrap();
    for d in c
        .pick("late", &fetchq_core::PickOptions::new().limit(10))
        .await
        .unwrap()
    {
        c.complete(&d.lease, None).await.unwrap();
    }
    let started = Instant::now();
    let st = json(&fetchq(&url, &["status", "--json", "--sample", "0s"]));
    assert!(started.elapsed() < Duration::from_secs(5));
    let late = st["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "late")
        .unwrap()
        .clone();
    assert_eq!(late["throughput_from"], "snapshot", "{late}");
    let rate = late["processed_per_minute"].as_f64().unwrap();
    assert!((4.9..=5.1).contains(&rate), "10 in 2 minutes: {late}");
    // --sample 0s and no snapshot: none
    let quiet = st["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "quiet")
        .unwrap()
        .clone();
    assert_eq!(quiet["processed_per_minute"], Value::Null);
    let table = ok(&fetchq(&url, &["status", "--sample", "0s"]));
    assert!(
        table.contains("LAG") && table.contains("PROCESSED/MIN"),
        "{table}"
    );
    assert!(table.contains("late") && table.contains("2m"), "{table}");
}

#[tokio::test]
async fn key_concurrency_and_keys_from_the_cli() {
    let db = TestDb::new().await;
    let (c, url) = (&db.client, db.url());
    c.queue_create("q").await.unwrap();
    let out = ok(&fetchq(
        &url,
        &["queue", "set", "q", "--key-concurrency", "1"],
    ));
    assert!(out.contains("key_concurrency 1"), "{out}");
    for bad in ["0", "10001", "many"] {
        err(
            &fetchq(&url, &["queue", "set", "q", "--key-concurrency", bad]),
            2,
        );
    }
    ok(&fetchq(&url, &["push", "q", "a1", "--key", "a.example"]));
    ok(&fetchq(&url, &["push", "q", "a2", "--key", "a.example"]));
    let lines = b"{\"subject\": \"b1\", \"key\": \"b.example\"}\n{\"subject\": \"b2\", \"key\": \"b.example\"}\n";
    ok(&fetchq_stdin(&url, &["push", "q", "--jsonl"], Some(lines)));
    err(
        &fetchq_stdin(
            &url,
            &["push", "q", "--jsonl"],
            Some(b"{\"subject\": \"c\", \"key\": 5}\n"),
        ),
        1,
    );
    err(&fetchq(&url, &["push", "q", "c", "--key", ""]), 1);
    let picked = c
        .pick("q", &fetchq_core::PickOptions::new().limit(10))
        .await
        .unwrap();
    assert_eq!(picked.len(), 2, "one of each key");
    let out = ok(&fetchq(
        &url,
        &["queue", "set", "q", "--key-concurrency", "none"],
    ));
    assert!(out.contains("key_concurrency none"), "{out}");
}

#[tokio::test]
async fn schedule_set_list_drop() {
    let db = TestDb::new().await;
    let url = db.url();
    db.client.queue_create("reports").await.unwrap();
    let out = ok(&fetchq(
        &url,
        &[
            "schedule",
            "set",
            "nightly",
            "30 2 * * *",
            "--queue",
            "reports",
            "--tz",
            "Europe/Stockholm",
            "--payload",
            r#"{"kind":"full"}"#,
            "--priority",
            "-3",
        ],
    ));
    assert!(out.contains("nightly: created"), "{out}");
    let out = ok(&fetchq(
        &url,
        &[
            "schedule",
            "set",
            "nightly",
            "30 2 * * *",
            "--queue",
            "reports",
            "--tz",
            "Europe/Stockholm",
        ],
    ));
    assert!(out.contains("changed") && out.contains("kept"), "{out}");
    let list = json(&fetchq(&url, &["schedule", "list", "--json"]));
    let s = &list["schedules"][0];
    assert_eq!(s["name"], "nightly");
    assert_eq!(s["subject"], "nightly");
    assert_eq!(s["time_zone"], "Europe/Stockholm");
    assert_eq!(s["payload"], serde_json::json!({}));
    assert_eq!(s["next_tick_at"], Value::Null);
    let text = ok(&fetchq(&url, &["schedule", "list"]));
    assert!(text.contains("not planned yet"), "{text}");

    // refusals (exit 2) before anything changed, with the reason
    for (args, needle) in [
        (
            vec!["schedule", "set", "x", "61 * * * *", "--queue", "reports"],
            "61 * * * *",
        ),
        (
            vec!["schedule", "set", "x", "* * * *", "--queue", "reports"],
            "5 fields",
        ),
        (
            vec![
                "schedule",
                "set",
                "x",
                "@daily",
                "--queue",
                "reports",
                "--tz",
                "Mars/Base",
            ],
            "Mars/Base",
        ),
        (
            vec![
                "schedule",
                "set",
                "x",
                "@daily",
                "--queue",
                "reports",
                "--payload",
                "{",
            ],
            "JSON",
        ),
        (
            vec!["schedule", "set", "a b", "@daily", "--queue", "reports"],
            "schedule name",
        ),
    ] {
        let e = err(&fetchq(&url, &args), 2);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    let e = err(
        &fetchq(
            &url,
            &["schedule", "set", "x", "@daily", "--queue", "ghost"],
        ),
        1,
    );
    assert!(e.contains("ghost"), "{e}");
    assert_eq!(
        json(&fetchq(&url, &["schedule", "list", "--json"]))["schedules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    assert!(ok(&fetchq(&url, &["schedule", "drop", "nightly"])).contains("dropped"));
    assert!(ok(&fetchq(&url, &["schedule", "drop", "nightly"])).contains("did not exist"));
    assert_eq!(
        json(&fetchq(&url, &["schedule", "list", "--json"]))["schedules"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn completed_retention_from_the_cli() {
    let db = TestDb::new().await;
    let (c, url) = (&db.client, db.url());
    c.queue_create("q").await.unwrap();
    let out = ok(&fetchq(
        &url,
        &["queue", "set", "q", "--completed-retention", "36h"],
    ));
    assert!(out.contains("completed_retention 1day 12h"), "{out}");
    assert_eq!(
        c.queue_status("q").await.unwrap().completed_retention,
        fetchq_core::Retention::After(Duration::from_secs(36 * 3600))
    );
    // refused by the parser, nothing changed
    for bad in ["-1h", "often", ""] {
        err(
            &fetchq(&url, &["queue", "set", "q", "--completed-retention", bad]),
            2,
        );
    }
    let listed = json(&fetchq(&url, &["queue", "list", "--json"]));
    assert_eq!(listed["queues"][0]["completed_retention"], "1day 12h");
    let out = ok(&fetchq(
        &url,
        &["queue", "set", "q", "--completed-retention", "at-once"],
    ));
    assert!(out.contains("completed_retention at-once"), "{out}");
    c.push("q", &NewDoc::new("mail-1")).await.unwrap();
    let doc = c
        .pick("q", &fetchq_core::PickOptions::new())
        .await
        .unwrap()
        .remove(0);
    c.complete(&doc.lease, None).await.unwrap();
    assert!(c.get("q", "mail-1").await.is_err());
    let out = ok(&fetchq(
        &url,
        &["queue", "set", "q", "--completed-retention", "keep"],
    ));
    assert!(out.contains("completed_retention keep"), "{out}");
}

#[tokio::test]
async fn a_too_long_completed_retention_changes_no_other_setting() {
    let db = TestDb::new().await;
    let (c, url) = (&db.client, db.url());
    c.queue_create("q").await.unwrap();
    let before = c.queue_status("q").await.unwrap().max_attempts;
    // refused by the parser: the max attempts of the same call stay too
    err(
        &fetchq(
            &url,
            &[
                "queue",
                "set",
                "q",
                "--max-attempts",
                "9",
                "--completed-retention",
                "200years",
            ],
        ),
        2,
    );
    let info = c.queue_status("q").await.unwrap();
    assert_eq!(
        (info.max_attempts, info.completed_retention),
        (before, fetchq_core::Retention::Keep)
    );
}

#[tokio::test]
async fn workers_lists_registrations_and_mnt_releases_a_lapsed_one() {
    let db = TestDb::new().await;
    let url = db.url();
    let c = &db.client;
    assert_eq!(
        ok(&fetchq(&url, &["workers"])).trim(),
        "no registered workers"
    );
    c.queue_create("q").await.unwrap();
    c.push("q", &NewDoc::new("s1")).await.unwrap();
    let owner = c
        .worker_register("host-\u{1b}[31m", 77, Duration::from_secs(5))
        .await
        .unwrap();
    let picked = c
        .pick(
            "q",
            &fetchq_core::PickOptions::new()
                .lease(Duration::from_secs(300))
                .owner(Some(owner)),
        )
        .await
        .unwrap();
    assert_eq!(picked.len(), 1);
    let listed = json(&fetchq(&url, &["workers", "--json"]));
    assert_eq!(listed[0]["owner"], owner);
    assert_eq!(listed[0]["pid"], 77);
    assert_eq!(listed[0]["lost"], false);
    let table = ok(&fetchq(&url, &["workers"]));
    assert!(table.contains("live") && table.contains("77"), "{table}");
    assert!(
        !table.contains('\u{1b}'),
        "control characters reach the terminal: {table}"
    );
    sqlx::query("UPDATE fetchq.workers SET seen_at = now() - interval '1 hour'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(ok(&fetchq(&url, &["workers"])).contains("lost"));
    let out = ok(&fetchq(&url, &["mnt"]));
    assert!(
        out.contains("released 1 documents of 1 lapsed workers"),
        "{out}"
    );
    assert_eq!(
        ok(&fetchq(&url, &["workers"])).trim(),
        "no registered workers"
    );
    let state = c.get("q", "s1").await.unwrap();
    assert_eq!(state.status, Status::Pending);
}

#[tokio::test]
async fn reindex_rebuilds_a_sparse_key_once_and_refuses_a_pooler() {
    let db = TestDb::new().await;
    let url = db.url();
    db.sparse_queue("seq", 40_000).await;
    let done = json(&fetchq(&url, &["reindex", "--json"]));
    let rebuilt = done["rebuilt"].as_array().unwrap();
    let pkey = rebuilt
        .iter()
        .find(|r| r["index"] == "fetchq_data.seq__docs_pkey")
        .unwrap_or_else(|| panic!("the sparse key was not rebuilt: {done}"));
    assert!(
        pkey["bytes_after"].as_i64().unwrap() * 5 < pkey["bytes_before"].as_i64().unwrap(),
        "{pkey}"
    );
    assert_eq!(ok(&fetchq(&url, &["reindex"])).trim(), "no bloated index");
    let refused = err(&fetchq(&url, &["--transaction-pooling", "reindex"]), 2);
    assert!(
        refused.contains("index rebuilds need a direct"),
        "{refused}"
    );
}
