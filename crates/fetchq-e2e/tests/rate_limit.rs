//! A rate limit holds across real worker processes: 8 processes on a queue
//! limited to 20 documents a second.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fetchq_core::{NewDoc, RateLimit};
use fetchq_testing::TestDb;

fn worker(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fetchq-test-worker"))
        .env("DATABASE_URL", url)
        .env("E2E_QUEUE", "polite")
        .env("E2E_CONCURRENCY", "4")
        .env("E2E_LEASE_MS", "60000")
        .env("E2E_GRACE_MS", "2000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_hold_twenty_a_second_and_use_it() {
    let db = TestDb::new().await;
    let c = &db.client;
    c.queue_create("polite").await.unwrap();
    sqlx::query("CREATE TABLE e2e_handled (subject text NOT NULL, pid bigint NOT NULL, token uuid NOT NULL, leased_at timestamptz)")
        .execute(&db.pool)
        .await
        .unwrap();
    let docs: Vec<NewDoc> = (0..1_000)
        .map(|i| NewDoc::new(format!("page-{i:05}")))
        .collect();
    c.push_many("polite", &docs).await.unwrap();
    c.queue_set_rate_limit(
        "polite",
        Some(RateLimit::new(20, Duration::from_secs(1)).unwrap()),
    )
    .await
    .unwrap();

    let xacts = "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()";
    let xacts_before: i64 = sqlx::query_scalar(xacts).fetch_one(&db.pool).await.unwrap();
    let mut workers: Vec<Child> = (0..8).map(|_| worker(&db.url())).collect();
    // 15 s of work after the first lease (start-up of 8 processes included)
    let first: DateTime<Utc> = loop {
        let t: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT min(leased_at) FROM e2e_handled")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if let Some(t) = t {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(16)).await;
    for w in &workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in &mut workers {
        let _ = w.wait();
    }

    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&db.pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let xacts_after: i64 = sqlx::query_scalar(xacts).fetch_one(&db.pool).await.unwrap();
    let times: Vec<DateTime<Utc>> =
        sqlx::query_scalar("SELECT leased_at FROM e2e_handled ORDER BY leased_at")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let pids: i64 = sqlx::query_scalar("SELECT count(DISTINCT pid) FROM e2e_handled")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(pids >= 4, "only {pids} processes worked");
    let second = chrono::Duration::seconds(1);
    let mut worst = 0;
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|t| **t - *start < second)
            .count();
        worst = worst.max(in_window);
    }
    assert!(worst <= 20, "{worst} leases within one second");
    let fifteen = chrono::Duration::seconds(15);
    let used = times.iter().filter(|t| **t - first < fifteen).count();
    assert!(
        used >= 270,
        "{used} leases in 15 s, want at least 90% of 300"
    );
    // no document was handled twice
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT subject) FROM e2e_handled")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(usize::try_from(distinct).unwrap(), times.len());
    // waiting for slots is sleeping, not polling: a pool spinning on its
    // 5 ms floor would cost ~80 transactions per lease here
    let per_lease = (xacts_after - xacts_before) as f64 / times.len() as f64;
    eprintln!(
        "rate limit e2e: {used} leases in 15 s, worst 1 s window {worst}, {pids} processes, \
         {per_lease:.1} transactions per lease"
    );
    assert!(per_lease < 15.0, "{per_lease:.1} transactions per lease");
}
