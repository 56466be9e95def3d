//! `fetchq serve` as a process: token setup, bind rules, SIGTERM.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fetchq_testing::TestDb;

fn serve(url: &str, args: &[&str], tokens: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fetchq"));
    cmd.arg("serve")
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("FETCHQ_TOKENS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = tokens {
        cmd.env("FETCHQ_TOKENS", t);
    }
    cmd.spawn().unwrap()
}

/// Reads stdout until the listening line (and the token line, if any).
fn started(child: &mut Child, want_token: bool) -> (String, Option<String>, Option<String>) {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // keep draining after the test stops listening
            let _ = tx.send(line);
        }
    });
    let (mut addr, mut token, mut console) = (None, None, None);
    while addr.is_none() || (want_token && (token.is_none() || console.is_none())) {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve printed its address");
        if let Some(a) = line.split("listening on http://").nth(1) {
            addr = a.split_whitespace().next().map(str::to_owned);
        }
        if let Some(t) = line.trim().strip_prefix("token:") {
            token = Some(t.trim().to_owned());
        }
        if let Some(u) = line.trim().strip_prefix("console:") {
            console = Some(u.trim().to_owned());
        }
    }
    (addr.unwrap(), token, console)
}

fn sigterm_and_wait(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit after SIGTERM: {status:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("fetchq serve did not stop on SIGTERM");
}

#[test]
fn refuses_a_public_bind_without_tokens() {
    let out = Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .args(["serve", "--bind", "0.0.0.0:0"])
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env_remove("FETCHQ_TOKENS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FETCHQ_TOKENS") && err.contains("--tokens-file"),
        "{err}"
    );
    // a bad token spec is refused too
    let out = Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("FETCHQ_TOKENS", "root=abcdefgh1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("abcdefgh1"),
        "the secret is not echoed"
    );
}

#[tokio::test]
async fn loopback_without_tokens_prints_a_generated_admin_token() {
    let db = TestDb::new().await;
    let mut child = serve(&db.url(), &["--bind", "127.0.0.1:0"], None);
    let (addr, token, console) = started(&mut child, true);
    let token = token.unwrap();
    // the printed console URL signs a browser in
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = browser
        .get(console.expect("serve printed the console URL"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("fetchq_session=")
    );
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/api/v1/queues"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http
        .get(format!("http://{addr}/api/v1/queues?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the printed URL form works");
    let res = http
        .get(format!("http://{addr}/api/v1/queues"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    sigterm_and_wait(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains(&token), "the token is not logged: {err}");
}

#[tokio::test]
async fn configured_tokens_allow_a_public_bind_and_migrate() {
    let db = TestDb::new().await;
    let empty = db.create_empty_database().await;
    let url = db.url().replace(&db.name, &empty);
    let dir = std::env::temp_dir().join(format!("fetchq-serve-tokens-{}", std::process::id()));
    std::fs::write(&dir, "# workers\npush+work=worker-secret-7\n").unwrap();
    let mut child = serve(
        &url,
        &[
            "--bind",
            "0.0.0.0:0",
            "--migrate",
            "--tokens-file",
            dir.to_str().unwrap(),
        ],
        Some("admin=admin-secret-7"),
    );
    let (addr, token, _) = started(&mut child, false);
    assert!(token.is_none());
    let port = addr.rsplit(':').next().unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let res = http
        .post(format!("{base}/api/v1/queues"))
        .bearer_auth("admin-secret-7")
        .json(&serde_json::json!({"name": "q"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "schema installed by --migrate");
    let res = http
        .post(format!("{base}/api/v1/queues/q/docs"))
        .bearer_auth("worker-secret-7")
        .json(&serde_json::json!({"docs": [{"subject": "a"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http
        .get(format!("{base}/api/v1/queues"))
        .bearer_auth("worker-secret-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    sigterm_and_wait(&mut child);
    let _ = std::fs::remove_file(dir);
    db.drop_database(&empty).await;
}
