//! The `fetchq` binary through a real PgBouncer in transaction pooling mode
//! (`--transaction-pooling` / `FETCHQ_TRANSACTION_POOLING`): the operator's
//! commands, and `fetchq serve` under concurrent REST calls, with two server
//! connections shared by every client connection. Skipped, loudly, when
//! pgbouncer is not installed, except under `CI=true`, where that fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use fetchq_testing::TestDb;
use fetchq_testing::pgbouncer::{BouncerOptions, PgBouncer};
use serde_json::{Value, json};

const TOKEN: &str = "admin+read+push+work=pgbouncer-test-secret-0123456789";
const SECRET: &str = "pgbouncer-test-secret-0123456789";

fn fetchq(url: &str, pooling: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fetchq"));
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env_remove("FETCHQ_TRANSACTION_POOLING");
    if let Some(value) = pooling {
        cmd.env("FETCHQ_TRANSACTION_POOLING", value);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn bouncer(db: &TestDb) -> Option<PgBouncer> {
    PgBouncer::start(&db.url(), &BouncerOptions::default())
}

#[tokio::test]
async fn operators_commands_run_through_transaction_pooling() {
    let db = TestDb::new().await;
    let Some(bouncer) = bouncer(&db).await else {
        return;
    };
    let url = bouncer.url();
    let on = Some("true");
    ok(&fetchq(&url, on, &["init"]));
    ok(&fetchq(&url, on, &["queue", "create", "crawl"]));
    for i in 0..5 {
        let subject = format!("https://example.com/{i}");
        ok(&fetchq(&url, on, &["push", "crawl", &subject]));
    }
    let status: Value =
        serde_json::from_str(&ok(&fetchq(&url, on, &["status", "--json"]))).unwrap();
    let text = status.to_string();
    assert!(text.contains("crawl"), "{text}");
    let docs = ok(&fetchq(&url, on, &["docs", "crawl"]));
    assert_eq!(docs.matches("https://example.com/").count(), 5, "{docs}");
    ok(&fetchq(&url, on, &["mnt"]));
    ok(&fetchq(&url, on, &["workers"]));
    ok(&fetchq(&url, on, &["metrics", "crawl"]));
    // the flag itself, not only the variable
    let out = Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .args([
            "--transaction-pooling",
            "docs",
            "crawl",
            "--status",
            "pending",
        ])
        .env("DATABASE_URL", &url)
        .env_remove("FETCHQ_TRANSACTION_POOLING")
        .output()
        .unwrap();
    assert_eq!(ok(&out).matches("https://example.com/").count(), 5);

    // dump and restore refuse a pooler, with the way out, and write nothing
    let dir = std::env::temp_dir().join(format!("fetchq-pgb-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("crawl.fqdump");
    let out = fetchq(
        &url,
        on,
        &["dump", "crawl", "--output", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("direct or session-pooled"), "{err}");
    assert!(!file.exists());
    // directly, the same dump works
    ok(&fetchq(
        &db.url(),
        None,
        &["dump", "crawl", "--output", file.to_str().unwrap()],
    ));
    let out = fetchq(&url, on, &["restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    std::fs::remove_dir_all(&dir).unwrap();

    // "false" (or no variable) means a direct connection's named statements
    let out = fetchq(&db.url(), Some("false"), &["docs", "crawl"]);
    assert_eq!(ok(&out).matches("https://example.com/").count(), 5);
}

/// `fetchq serve`, killed when dropped (a failing test leaves no process).
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(url: &str) -> (Serve, String) {
    let mut child = Serve(
        Command::new(env!("CARGO_BIN_EXE_fetchq"))
            .args(["--transaction-pooling", "serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", url)
            .env("FETCHQ_TOKENS", TOKEN)
            .env_remove("FETCHQ_TRANSACTION_POOLING")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve printed its address");
        if let Some(a) = line.split("listening on http://").nth(1) {
            let addr = a.split_whitespace().next().unwrap().to_owned();
            return (child, format!("http://{addr}/api/v1"));
        }
    }
}

/// A POST of `body` (a GET without one) that must succeed; its JSON answer.
async fn call(http: &reqwest::Client, url: &str, body: Option<Value>) -> Value {
    let request = match body {
        Some(body) => http.post(url).json(&body),
        None => http.get(url),
    };
    let res = request.bearer_auth(SECRET).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// 16 concurrent REST workers push, pick and resolve through `fetchq serve`,
/// whose 16 database connections share PgBouncer's two: any named statement
/// would meet another connection's and fail the call.
#[tokio::test]
async fn serve_answers_concurrent_calls_through_transaction_pooling() {
    let db = TestDb::new().await;
    let Some(bouncer) = bouncer(&db).await else {
        return;
    };
    ok(&fetchq(&db.url(), None, &["init"]));
    ok(&fetchq(&db.url(), None, &["queue", "create", "crawl"]));
    let (child, api) = serve(&bouncer.url());
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (http, api) = (http.clone(), api.clone());
        tasks.push(tokio::spawn(async move {
            let mut resolved = 0usize;
            for round in 0..10 {
                let docs: Vec<Value> = (0..5)
                    .map(|i| json!({"subject": format!("w{w}-r{round}-{i}")}))
                    .collect();
                call(
                    &http,
                    &format!("{api}/queues/crawl/docs"),
                    Some(json!({"docs": docs})),
                )
                .await;
                let picked = call(
                    &http,
                    &format!("{api}/queues/crawl/pick"),
                    Some(json!({"limit": 5, "lease": "30s"})),
                )
                .await;
                let results: Vec<Value> = picked["docs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        json!({"subject": d["subject"], "lease_token": d["lease_token"],
                               "outcome": "complete"})
                    })
                    .collect();
                if results.is_empty() {
                    continue;
                }
                resolved += results.len();
                let body = json!({"results": results});
                call(&http, &format!("{api}/queues/crawl/resolve"), Some(body)).await;
                call(&http, &format!("{api}/queues/crawl/docs?limit=20"), None).await;
            }
            resolved
        }));
    }
    let mut resolved = 0;
    for t in tasks {
        resolved += t.await.unwrap();
    }
    drop(child);
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fetchq_data.crawl__docs WHERE status = 3")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(completed as usize, resolved);
    assert!(resolved > 0);
    let log = bouncer.log();
    assert!(!log.contains("prepared statement"), "{log}");
}
