//! Real worker processes on one queue: exactly-once under concurrency, SIGKILL,
//! SIGTERM, and a PostgreSQL restart.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fetchq_core::{Client, NewDoc};
use fetchq_testing::TestDb;
use sqlx::PgPool;

fn worker(url: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fetchq-test-worker"));
    cmd.env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for a process to exit, at most `within`; returns its exit code.
async fn exit_code(child: &mut Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("worker {} did not exit within {within:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn prepare(pool: &PgPool, client: &Client, docs: usize) {
    client.queue_create("e2e").await.unwrap();
    sqlx::query("CREATE TABLE e2e_handled (subject text NOT NULL, pid bigint NOT NULL, token uuid NOT NULL, leased_at timestamptz)")
        .execute(pool)
        .await
        .unwrap();
    let all: Vec<NewDoc> = (0..docs)
        .map(|i| NewDoc::new(format!("doc-{i:06}")))
        .collect();
    for chunk in all.chunks(5_000) {
        client.push_many("e2e", chunk).await.unwrap();
    }
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn wait_for(pool: &PgPool, sql: &str, target: i64, within: Duration) {
    let start = Instant::now();
    loop {
        let n = scalar(pool, sql).await;
        if n >= target {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{sql}: {n} < {target} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const COMPLETED: &str = "SELECT count(*) FROM fetchq_data.e2e__docs WHERE status = 3";
const HANDLED: &str = "SELECT count(*) FROM e2e_handled";

/// Every document completed exactly once: all are completed, the completion
/// counter equals the number of documents, and each document's iterations are
/// one completion plus the rejects in its log (a handler that failed while the
/// database was away was rejected and retried; orphan rescues log but do not
/// count as iterations). Counters agree with a real count.
async fn assert_completed_once(pool: &PgPool, client: &Client, docs: i64) {
    let off = scalar(
        pool,
        "SELECT count(*) FROM fetchq_data.e2e__docs d
         WHERE d.status <> 3 OR d.iterations <> 1 + (
             SELECT count(*) FROM fetchq_data.e2e__logs l
             WHERE l.subject = d.subject AND l.ref_id IS DISTINCT FROM 'fetchq:orphan')",
    )
    .await;
    assert_eq!(off, 0, "documents not completed exactly once");
    client.metric_log_pack().await.unwrap();
    let counters = client.metric_get_common("e2e").await.unwrap();
    assert_eq!(
        counters.status_counts(),
        client.metric_compute("e2e").await.unwrap()
    );
    assert_eq!(counters.completed, docs);
}

#[tokio::test]
async fn four_processes_handle_20000_documents_exactly_once() {
    const DOCS: usize = 20_000;
    let db = TestDb::new().await;
    prepare(&db.pool, &db.client, DOCS).await;
    let url = db.url();
    let mut workers: Vec<Child> = (0..4)
        .map(|_| worker(&url, &[("E2E_CONCURRENCY", "16")]))
        .collect();
    wait_for(&db.pool, COMPLETED, DOCS as i64, Duration::from_secs(300)).await;
    for w in &workers {
        signal(w, "-TERM");
    }
    for w in &mut workers {
        assert_eq!(exit_code(w, Duration::from_secs(30)).await, Some(0));
    }
    assert_eq!(
        scalar(&db.pool, HANDLED).await,
        DOCS as i64,
        "handled exactly once"
    );
    assert_eq!(
        scalar(&db.pool, "SELECT count(DISTINCT subject) FROM e2e_handled").await,
        DOCS as i64
    );
    let busy = scalar(&db.pool, "SELECT count(DISTINCT pid) FROM e2e_handled").await;
    assert_eq!(busy, 4, "every process took part");
    assert_completed_once(&db.pool, &db.client, DOCS as i64).await;
}

#[tokio::test]
async fn a_killed_worker_s_documents_come_back_and_complete_once() {
    const DOCS: usize = 1_500;
    let db = TestDb::new().await;
    prepare(&db.pool, &db.client, DOCS).await;
    let url = db.url();
    let env = [
        ("E2E_CONCURRENCY", "8"),
        ("E2E_WORK_MS", "40"),
        ("E2E_LEASE_MS", "1500"),
    ];
    let mut victim = worker(&url, &env);
    let mut survivors: Vec<Child> = (0..2).map(|_| worker(&url, &env)).collect();
    let victim_handled = format!(
        "SELECT count(*) FROM e2e_handled WHERE pid = {}",
        victim.id()
    );
    wait_for(&db.pool, &victim_handled, 40, Duration::from_secs(60)).await;
    victim.kill().unwrap(); // SIGKILL, mid-batch
    victim.wait().unwrap();

    wait_for(&db.pool, COMPLETED, DOCS as i64, Duration::from_secs(120)).await;
    for w in &survivors {
        signal(w, "-TERM");
    }
    for w in &mut survivors {
        assert_eq!(exit_code(w, Duration::from_secs(30)).await, Some(0));
    }
    db.client.metric_log_pack().await.unwrap();
    let counters = db.client.metric_get_common("e2e").await.unwrap();
    assert!(
        counters.orphans > 0,
        "the killed worker left leased documents behind"
    );
    let redone = scalar(
        &db.pool,
        "SELECT count(*) - count(DISTINCT subject) FROM e2e_handled",
    )
    .await;
    assert!(redone > 0, "its unfinished documents were handled again");
    assert_completed_once(&db.pool, &db.client, DOCS as i64).await;
}

#[tokio::test]
async fn sigterm_lets_in_flight_work_finish_and_exits_zero() {
    const DOCS: usize = 300;
    let db = TestDb::new().await;
    prepare(&db.pool, &db.client, DOCS).await;
    let mut w = worker(
        &db.url(),
        &[
            ("E2E_CONCURRENCY", "8"),
            ("E2E_WORK_MS", "400"),
            ("E2E_GRACE_MS", "5000"),
        ],
    );
    wait_for(&db.pool, HANDLED, 8, Duration::from_secs(60)).await;
    signal(&w, "-TERM");
    let asked = Instant::now();
    assert_eq!(exit_code(&mut w, Duration::from_secs(5)).await, Some(0));
    assert!(asked.elapsed() < Duration::from_secs(5));
    // every document a handler started was finished; the rest wait, none is lost or held
    let started_not_done = scalar(
        &db.pool,
        "SELECT count(*) FROM e2e_handled h JOIN fetchq_data.e2e__docs d USING (subject) WHERE d.status <> 3",
    )
    .await;
    assert_eq!(started_not_done, 0);
    let counts = db.client.metric_compute("e2e").await.unwrap();
    assert_eq!(counts.active, 0, "nothing left leased");
    assert_eq!(
        counts.completed + counts.pending,
        DOCS as i64,
        "nothing lost"
    );
    assert!(counts.completed >= 8);
}

/// A private cluster for the restart test, stopped and removed on drop.
struct OwnCluster(fetchq_core::embedded::EmbeddedPostgres);

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.0.stop();
        if let Some(parent) = self.0.data_dir().parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

#[tokio::test]
async fn workers_survive_a_postgres_restart_and_finish_the_queue() {
    const DOCS: usize = 3_000;
    let dir = std::env::temp_dir().join(format!("fetchq-restart-{}", std::process::id()));
    let cluster = OwnCluster(
        fetchq_core::embedded::EmbeddedPostgres::new(dir.join("pg"))
            .unwrap()
            .setting("fsync", "off"),
    );
    let url = cluster.0.start().unwrap().url("postgres");
    let pool = PgPool::connect(&url).await.unwrap();
    let client = Client::new(pool.clone());
    client.migrate().await.unwrap();
    prepare(&pool, &client, DOCS).await;
    let env = [("E2E_CONCURRENCY", "8"), ("E2E_WORK_MS", "5")];
    let mut workers: Vec<Child> = (0..2).map(|_| worker(&url, &env)).collect();
    wait_for(&pool, HANDLED, 300, Duration::from_secs(60)).await;

    pool.close().await;
    cluster.0.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await; // workers now fail to reach it
    let again = cluster.0.start().unwrap();
    assert_eq!(
        again.url("postgres"),
        url,
        "the server came back on its port"
    );
    for w in &mut workers {
        assert!(
            w.try_wait().unwrap().is_none(),
            "a worker died with the database"
        );
    }

    let pool = PgPool::connect(&url).await.unwrap();
    wait_for(&pool, COMPLETED, DOCS as i64, Duration::from_secs(120)).await;
    for w in &workers {
        signal(w, "-TERM");
    }
    for w in &mut workers {
        assert_eq!(exit_code(w, Duration::from_secs(30)).await, Some(0));
    }
    let client = Client::new(pool.clone());
    assert_completed_once(&pool, &client, DOCS as i64).await;
    let rejected = scalar(
        &pool,
        "SELECT count(*) FROM fetchq_data.e2e__logs WHERE ref_id IS NULL",
    )
    .await;
    eprintln!(
        "restart: {rejected} handler runs failed while the database was away (rejected, retried)"
    );
    pool.close().await;
}

#[tokio::test]
async fn a_second_sigterm_forces_a_fast_exit() {
    const DOCS: usize = 20;
    let db = TestDb::new().await;
    prepare(&db.pool, &db.client, DOCS).await;
    let env = [
        ("E2E_CONCURRENCY", "4"),
        ("E2E_WORK_MS", "60000"),
        ("E2E_GRACE_MS", "60000"),
    ];
    let mut w = worker(&db.url(), &env);
    wait_for(&db.pool, HANDLED, 4, Duration::from_secs(60)).await;
    signal(&w, "-TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        w.try_wait().unwrap().is_none(),
        "the first signal waits for in-flight work"
    );
    signal(&w, "-TERM");
    let asked = Instant::now();
    let code = exit_code(&mut w, Duration::from_secs(5)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "forced exit took {:?}",
        asked.elapsed()
    );
    assert_eq!(code, Some(1), "a forced shutdown is not a clean exit");
    // the four leased documents were not given back: they return after their lease
    let counts = db.client.metric_compute("e2e").await.unwrap();
    assert_eq!((counts.active, counts.completed), (4, 0));
}

/// A worker SIGKILLed with five-minute leases: its registration lapses after
/// `rescue_after` (2 s here), maintenance in a survivor releases its leases,
/// and its documents run elsewhere long before their leases would end.
#[tokio::test]
async fn a_killed_worker_s_documents_run_elsewhere_long_before_their_lease_ends() {
    const DOCS: usize = 600;
    let db = TestDb::new().await;
    prepare(&db.pool, &db.client, DOCS).await;
    let url = db.url();
    let env = [
        ("E2E_CONCURRENCY", "8"),
        ("E2E_WORK_MS", "40"),
        ("E2E_LEASE_MS", "300000"),
        ("E2E_RESCUE_AFTER_MS", "2000"),
    ];
    let mut victim = worker(&url, &env);
    let mut survivors: Vec<Child> = (0..2).map(|_| worker(&url, &env)).collect();
    let victim_handled = format!(
        "SELECT count(*) FROM e2e_handled WHERE pid = {}",
        victim.id()
    );
    wait_for(&db.pool, &victim_handled, 40, Duration::from_secs(60)).await;
    let victim_pid = i64::from(victim.id());
    victim.kill().unwrap(); // SIGKILL, mid-batch
    victim.wait().unwrap();
    let killed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let left = scalar(
        &db.pool,
        "SELECT count(*) FROM fetchq_data.e2e__docs WHERE status = 2",
    )
    .await;

    // without the registration these would wait 300 s
    wait_for(&db.pool, COMPLETED, DOCS as i64, Duration::from_secs(60)).await;
    // the victim's unfinished documents, handled again by a survivor: when
    let rescued: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT min(h.leased_at) FROM e2e_handled h
         WHERE h.pid <> $1 AND h.leased_at >= $2
           AND EXISTS (SELECT 1 FROM e2e_handled v WHERE v.pid = $1 AND v.subject = h.subject)",
    )
    .bind(victim_pid)
    .bind(killed_at)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    for w in &survivors {
        signal(w, "-TERM");
    }
    for w in &mut survivors {
        assert_eq!(exit_code(w, Duration::from_secs(30)).await, Some(0));
    }
    let orphans = scalar(
        &db.pool,
        "SELECT count(*) FROM fetchq_data.e2e__logs WHERE ref_id = 'fetchq:orphan'",
    )
    .await;
    eprintln!(
        "active at the kill: {left}; released as orphans: {orphans}; first of them running elsewhere {:?} after the kill",
        rescued.map(|r| r - killed_at)
    );
    assert!(
        orphans > 0,
        "the killed worker left leased documents behind"
    );
    let after =
        rescued.expect("a survivor handled one of the victim's documents again") - killed_at;
    assert!(
        after < chrono::Duration::seconds(30),
        "rescued {after:?} after the kill: the lease is 300 s, rescue_after 2 s"
    );
    assert_completed_once(&db.pool, &db.client, DOCS as i64).await;
}
