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
    // a sample every 10 ms: each on its own task (a sample takes longer than
    // 10 ms on a busy 2-core host), at most 4 at once
    let (start, mut samples, mut worst, mut at_cap) = (Instant::now(), 0_i64, 0_i64, 0_i64);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut running = tokio::task::JoinSet::new();
    let mut ticks = 0_u64;
    loop {
        tick.tick().await;
        ticks += 1;
        if running.len() < 4 {
            let pool = db.pool.clone();
            running.spawn(async move {
                sqlx::query_scalar::<_, i64>(busiest)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            });
        }
        while let Some(n) = running.try_join_next() {
            let n = n.unwrap();
            worst = worst.max(n);
            at_cap += i64::from(n == 2);
            samples += 1;
        }
        if ticks.is_multiple_of(50) {
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
    }
    while let Some(n) = running.join_next().await {
        let n = n.unwrap();
        worst = worst.max(n);
        at_cap += i64::from(n == 2);
        samples += 1;
    }
    let sampling_ms = start.elapsed().as_secs_f64() * 1000.0 / samples.max(1) as f64;
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
        "key concurrency e2e: 5000 documents in {:.1} s by {pids} processes, {samples} samples (one every {sampling_ms:.1} ms), busiest key {worst}, at the cap in {at_cap}",
        start.elapsed().as_secs_f64()
    );
}
