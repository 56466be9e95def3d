//! Dump and restore while workers run.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{dump_bytes, fill, plain};
use fetchq_backup::{Header, RestoreOptions};
use fetchq_core::{NewDoc, PickOptions};
use fetchq_testing::TestDb;

/// Picks and completes on `queue` until `stop`, counting completions.
fn worker(
    client: fetchq_core::Client,
    queue: &'static str,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let docs = client
                .pick(queue, &PickOptions::new().limit(50))
                .await
                .unwrap();
            if docs.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            for d in docs {
                client.complete(&d.lease, None).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_while_another_queue_is_worked() {
    let db = TestDb::new().await;
    fill(&db.pool, "src", 30_000).await;
    let file = dump_bytes(
        &db.pool,
        &fetchq_backup::DumpOptions::queues(["src"]).include_logs(true),
    )
    .await;

    db.client.queue_create("busy").await.unwrap();
    let docs: Vec<NewDoc> = (0..20_000).map(|i| NewDoc::new(format!("b{i}"))).collect();
    db.client.push_many("busy", &docs).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let w = worker(db.client.clone(), "busy", stop.clone(), done.clone());
    while done.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let during_start = done.load(Ordering::Relaxed);
    for i in 0..3 {
        let s = fetchq_backup::restore(
            &db.pool,
            &RestoreOptions::default().rename(format!("copy{i}")),
            Cursor::new(file.clone()),
        )
        .await
        .unwrap();
        assert_eq!(s.queues[0].docs_written, 30_000);
    }
    let during = done.load(Ordering::Relaxed) - during_start;
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    assert!(during > 0, "the worker kept completing during the restores");
    db.client.metric_log_pack().await.unwrap();
    for queue in ["busy", "copy0", "copy1", "copy2"] {
        let real = db.client.metric_compute(queue).await.unwrap();
        let c = db.client.metric_get_common(queue).await.unwrap();
        assert_eq!(
            (c.total, c.planned, c.pending, c.active, c.completed, c.dead),
            (
                real.total,
                real.planned,
                real.pending,
                real.active,
                real.completed,
                real.dead
            ),
            "{queue}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_while_a_worker_drains_the_same_queue_is_one_snapshot() {
    let db = TestDb::new().await;
    db.client.queue_create("work").await.unwrap();
    let docs: Vec<NewDoc> = (0..40_000).map(|i| NewDoc::new(format!("w{i}"))).collect();
    db.client.push_many("work", &docs).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| worker(db.client.clone(), "work", stop.clone(), done.clone()))
        .collect();
    while done.load(Ordering::Relaxed) < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut files = Vec::new();
    for _ in 0..3 {
        let before = done.load(Ordering::Relaxed);
        files.push(dump_bytes(&db.pool, &plain(&["work"])).await);
        files.push(dump_bytes(&db.pool, &fetchq_backup::DumpOptions::all()).await);
        assert!(done.load(Ordering::Relaxed) >= before);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let mut completed_seen = Vec::new();
    for file in files.iter().step_by(2) {
        let text = std::str::from_utf8(file).unwrap();
        let mut lines = text.lines();
        let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
        let c = header.queues[0].counts;
        let rows: Vec<serde_json::Value> = lines
            .filter(|l| l.starts_with('['))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let by = |s: i64| rows.iter().filter(|r| r[3] == s).count() as i64;
        assert_eq!(rows.len() as i64, c.cnt);
        assert_eq!(c.cnt, 40_000);
        assert_eq!(
            (by(0), by(1), by(2), by(3), by(-1)),
            (c.pln, c.pnd, c.act, c.cpl, c.kll)
        );
        completed_seen.push(c.cpl);
    }
    assert!(completed_seen.windows(2).all(|w| w[0] <= w[1]));
    // every file, taken while the worker ran, restores
    for (i, file) in files.into_iter().enumerate() {
        let s = fetchq_backup::restore(
            &db.pool,
            &RestoreOptions::default().rename(format!("r{i}")),
            Cursor::new(file),
        )
        .await
        .unwrap();
        assert_eq!(s.queues[0].docs_written, 40_000);
    }
}

/// A writer slow enough that the dump is still running when the queue is dropped.
struct Slow(Vec<u8>);

impl std::io::Write for Slow {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_dropped_during_a_dump_waits_for_it() {
    let db = TestDb::new().await;
    fill(&db.pool, "big", 20_000).await;
    fill(&db.pool, "small", 10).await;
    let opts = fetchq_backup::DumpOptions::queues(["big", "small"])
        .compression(fetchq_backup::Compression::None);
    let pool = db.pool.clone();
    let dump =
        tokio::spawn(async move { fetchq_backup::dump_into(&pool, &opts, Slow(Vec::new())).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !dump.is_finished(),
        "the dump must still be running for this test"
    );
    let dropped = db.client.queue_drop("small").await;
    let (out, summary) = dump.await.unwrap().unwrap();
    assert!(dropped.unwrap());
    assert_eq!(summary.header.queues[1].counts.cnt, 10);
    let s = fetchq_backup::restore(&db.pool, &RestoreOptions::default(), Cursor::new(out.0)).await;
    // big exists: the file is fine, the conflict is the only refusal
    assert!(matches!(s, Err(fetchq_backup::Error::QueueExists(q)) if q == "big"));
}
