//! The `fetchq` binary against a real database.

use std::process::{Command, Output};

use fetchq_testing::TestDb;

fn fetchq(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run fetchq")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn init_queue_push_metrics_round_trip() {
    let db = TestDb::new().await;
    let url = db.url();
    let out = fetchq(&url, &["init"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("up to date"));
    let schema = fetchq_core::latest_schema_version();
    assert!(stdout(&fetchq(&url, &["info"])).contains(&format!("schema {schema}")));

    assert!(stdout(&fetchq(&url, &["queue", "create", "avengers"])).contains("created"));
    assert!(stdout(&fetchq(&url, &["queue", "create", "avengers"])).contains("already exists"));
    let out = fetchq(
        &url,
        &[
            "push",
            "avengers",
            "ironman",
            "--payload",
            r#"{"score": 20}"#,
            "--priority",
            "3",
        ],
    );
    assert!(stdout(&out).contains("queued"), "{out:?}");
    assert!(stdout(&fetchq(&url, &["push", "avengers", "ironman"])).contains("duplicate"));
    let doc = db.client.get("avengers", "ironman").await.expect("pushed");
    assert_eq!((doc.priority, doc.payload["score"].as_i64()), (3, Some(20)));

    let metrics = stdout(&fetchq(&url, &["metrics", "avengers"]));
    assert!(
        metrics.contains("documents 1") && metrics.contains("pending 1"),
        "{metrics}"
    );
    assert!(stdout(&fetchq(&url, &["queue", "list"])).contains("avengers\tactive"));
    assert!(stdout(&fetchq(&url, &["mnt"])).contains("maintenance jobs"));
}

#[tokio::test]
async fn bad_input_exits_non_zero_with_a_message() {
    let db = TestDb::new().await;
    let url = db.url();
    for args in [
        &["queue", "create", "bad'name"][..],
        &["push", "ghost", "x"],
        &["push", "ghost", "x", "--payload", "{not json"],
        &["metrics", "ghost"],
    ] {
        let out = fetchq(&url, args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("fetchq: "), "{args:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .arg("info")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run fetchq");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
}

#[tokio::test]
async fn extension_files_are_written_to_a_directory() {
    let dir = std::env::temp_dir().join(format!("fetchq-ext-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .args(["extension", "--out-dir"])
        .arg(&dir)
        .output()
        .expect("run fetchq");
    assert!(out.status.success(), "{out:?}");
    let version = fetchq_core::extension::version_for(fetchq_core::latest_schema_version());
    let control = std::fs::read_to_string(dir.join("fetchq.control")).expect("control file");
    assert!(control.contains(&format!("default_version = '{version}'")));
    let script = std::fs::read_to_string(dir.join(format!("fetchq--{version}.sql")))
        .expect("install script");
    assert!(script.contains("CREATE FUNCTION fetchq.doc_pick"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_postgres_binaries_say_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_fetchq"))
        .args(["dev-db", "start", "--data-dir"])
        .arg(std::env::temp_dir().join("fetchq-no-binaries"))
        .env("FETCHQ_PG_BIN", "/nonexistent/bin")
        .output()
        .expect("run fetchq");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apt-get install postgresql") && err.contains("DATABASE_URL"),
        "{err}"
    );
}
