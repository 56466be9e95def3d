//! Per-key concurrency across real worker processes: 6 processes, 5,000
//! documents on 50 keys, at most 2 active per key.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fetchq_core::NewDoc;
use fetchq_testing::TestDb;

fn worker(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fetchq-test-worker"))
        .env("DATABASE_URL", url)
        .env("E2E_QUEUE", "hosts")
        .env("E2E_CONCURRENCY", "16")
        .env("E2E_WORK_MS", "10")
        .env("E2E_GRACE_MS", "2000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_processes_never_run_three_of_one_key() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("hosts").await.unwrap();
    sqlx::query("CREATE TABLE e2e_handled (subject text NOT NULL, pid bigint NOT NULL, token uuid NOT NULL, leased_at timestamptz)")
        .execute(&db.pool)
        .await
        .unwrap();
    let docs: Vec<NewDoc> = (0..5_000)
        .map(|i| NewDoc::new(format!("page-{i:05}")).key(format!("host-{}", i % 50)))
        .collect();
    c.push_many("hosts", &docs).await.unwrap();
    c.queue_set_key_concurrency("hosts", Some(2)).await.unwrap();

    let mut workers: Vec<Child> = (0..6).map(|_| worker(&db.url())).collect();
    let busiest = "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM fetchq_data.hosts__docs \
                   WHERE status = 2 AND key IS NOT NULL GROUP BY key) AS k";
    let completed = "SELECT count(*) FROM fetchq_data.hosts__docs WHERE status = 3";
    let (start, mut samples, mut worst, mut at_cap) = (Instant::now(), 0, 0_i64, 0);
    loop {
        let n: i64 = sqlx::query_scalar(busiest)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        worst = worst.max(n);
        if n == 2 {
            at_cap += 1;
        }
        samples += 1;
        if samples % 50 == 0 {
            let done: i64 = sqlx::query_scalar(completed)
                .fetch_one(&db.pool)
                .await
                .unwrap();
            if done == 5_000 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "{done} of 5000 after 180 s"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for w in &workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in &mut workers {
        let _ = w.wait();
    }
    assert!(
        worst <= 2,
        "a sample saw {worst} active documents of one key"
    );
    assert!(
        at_cap > samples / 4,
        "keys were rarely full ({at_cap} of {samples} samples): the test proved little"
    );
    let handled: i64 = sqlx::query_scalar("SELECT count(DISTINCT subject) FROM e2e_handled")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(handled, 5_000);
    let pids: i64 = sqlx::query_scalar("SELECT count(DISTINCT pid) FROM e2e_handled")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(pids >= 3, "only {pids} processes worked");
    eprintln!(
        "key concurrency e2e: 5000 documents in {:.1} s by {pids} processes, {samples} samples, busiest key {worst}, at the cap in {at_cap}",
        start.elapsed().as_secs_f64()
    );
}
