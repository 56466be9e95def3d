//! The Grafana board proven against a real Prometheus: it scrapes the server's
//! `GET /metrics` and a worker process's metrics endpoint every second while
//! documents are worked, then every `expr` of `deploy/grafana/fetchq.json`
//! (with `$queue` substituted) must answer without error and with series.
//! Also: `promtool check metrics` on both expositions and `promtool check
//! config` on `deploy/prometheus/prometheus.yml`.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`): skipped with
//! a note when missing, failed when missing with CI=true.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fetchq_core::NewDoc;
use fetchq_testing::TestDb;
use serde_json::Value;

const QUEUE: &str = "board";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary, or None (skip) when it is missing outside CI.
fn tool(name: &str) -> Option<PathBuf> {
    let found = [format!("/usr/bin/{name}"), format!("/usr/local/bin/{name}")]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is missing on CI (apt-get install prometheus)"
        );
        eprintln!("NOTE: {name} not found (apt-get install prometheus): the board test is skipped");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills and reaps a child process when dropped (a failing test leaves nothing behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes a directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every target `expr` of the board, with its panel title.
fn board_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/fetchq.json")).unwrap();
    let board: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in board["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            out.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    // the queue selector's query is a label query
    let vars = board["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["name"] == "queue"
                && v["definition"] == "label_values(fetchq_documents, queue)"),
        "the board has a queue selector"
    );
    out
}

fn substitute(expr: &str) -> String {
    expr.replace("$queue", QUEUE)
        .replace("$__rate_interval", "20s")
}

async fn push_wave(c: &fetchq_core::Client, wave: usize, n: usize) {
    let docs: Vec<NewDoc> = (0..n)
        .map(|i| NewDoc::new(format!("w{wave}-{i}")))
        .collect();
    c.push_many(QUEUE, &docs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_board_query_returns_series_from_a_real_prometheus() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    // the shipped scrape example is valid
    let out = Command::new(&promtool)
        .args(["check", "config"])
        .arg(repo_root().join("deploy/prometheus/prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create(QUEUE).await.unwrap();
    sqlx::query("CREATE TABLE e2e_handled (subject text NOT NULL, pid bigint NOT NULL, token uuid NOT NULL, leased_at timestamptz)")
        .execute(&db.pool)
        .await
        .unwrap();
    push_wave(&c, 0, 300).await;

    // the server, metrics public, on a random port
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = fetchq_server::Config {
        metrics_public: true,
        ..fetchq_server::Config::default()
    };
    let server = tokio::spawn(fetchq_server::serve(
        listener,
        c.clone(),
        config,
        async move {
            let _ = stopped.await;
        },
    ));

    // a worker process with its metrics endpoint
    let worker_port = free_port();
    let worker_addr = format!("127.0.0.1:{worker_port}");
    let worker = Reaped(
        Command::new(env!("CARGO_BIN_EXE_fetchq-test-worker"))
            .env("DATABASE_URL", db.url())
            .env("E2E_QUEUE", QUEUE)
            .env("E2E_CONCURRENCY", "4")
            .env("E2E_WORK_MS", "20")
            .env("E2E_METRICS_ADDR", &worker_addr)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    // a real Prometheus scraping both every second
    let dir = TempDir(std::env::temp_dir().join(format!(
        "fetchq-board-{}-{}",
        std::process::id(),
        worker_port
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
         - job_name: fetchq\n    static_configs:\n      - targets: ['{server_addr}']\n  \
         - job_name: fetchq-worker\n    static_configs:\n      - targets: ['{worker_addr}']\n"
    );
    std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
    let prom_port = free_port();
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let _prometheus = Reaped(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready = Instant::now();
    loop {
        let ok = http
            .get(format!("{prom_url}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // load while Prometheus scrapes: waves of documents for several seconds
    for wave in 1..=8 {
        push_wave(&c, wave, 100).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }

    let query = |expr: String| {
        let http = http.clone();
        let url = format!("{prom_url}/api/v1/query");
        async move {
            let res = http
                .get(url)
                .query(&[("query", expr.as_str())])
                .send()
                .await;
            match res {
                Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                Err(e) => serde_json::json!({"status": "error", "error": e.to_string()}),
            }
        }
    };
    // both targets up
    let up = Instant::now();
    loop {
        let v = query("sum(up)".into()).await;
        if v["data"]["result"][0]["value"][1] == "2" {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "targets not up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // the queue selector finds the queue
    let labels: Value = http
        .get(format!("{prom_url}/api/v1/label/queue/values"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        labels["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q == QUEUE),
        "{labels}"
    );

    // every expression of the board: no error, some series (a rate needs two
    // scrapes in its window: allow a few seconds)
    let exprs = board_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for (title, expr) in &exprs {
        let q = substitute(expr);
        let start = Instant::now();
        loop {
            let v = query(q.clone()).await;
            assert_ne!(v["status"], "error", "{title}: {q}: {v}");
            let n = v["data"]["result"].as_array().map_or(0, Vec::len);
            if v["status"] == "success" && n > 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{title}: {q}: no series: {v}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // values that mean something: documents were processed and timed
    let processed = query(format!(
        "sum(fetchq_events_total{{queue=\"{QUEUE}\",event=\"processed\"}})"
    ))
    .await;
    let processed: f64 = processed["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(processed > 0.0);
    let timed = query(format!(
        "sum(fetchq_timer_seconds_count{{queue=\"{QUEUE}\",timer=\"record\"}})"
    ))
    .await;
    assert!(timed["data"]["result"][0]["value"][1] != "0", "{timed}");

    // promtool on both expositions
    let server_text = http
        .get(format!("http://{server_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    fetchq_testing::promtool_check_metrics(Some(&promtool), "fetchq serve", &server_text);
    let worker_text = http
        .get(format!("http://{worker_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    fetchq_testing::promtool_check_metrics(Some(&promtool), "the worker", &worker_text);

    drop(worker);
    let _ = stop_server.send(());
    let _ = server.await;
}
