//! Regression tests: dropping, truncating and repairing queues while
//! maintenance runs on them. queue_drop used to take the queue's tables and
//! then wait for the queue's job rows, which a running `mnt_job_run` holds
//! while it waits for those tables: a deadlock (40P01) on one side, and
//! "relation does not exist" on the other when maintenance woke up after the
//! drop.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fetchq_core::{Client, NewDoc, PickOptions};
use fetchq_testing::TestDb;
use tokio::task::JoinHandle;

/// Errors seen by any task, with who saw them.
type Errors = Arc<Mutex<Vec<String>>>;

fn record(errors: &Errors, who: &str, what: impl std::fmt::Display) {
    let mut e = errors.lock().unwrap();
    if e.len() < 50 {
        e.push(format!("{who}: {what}"));
    }
}

/// Starts the maintenance loops every deployment runs side by side: the worker
/// leader's `mnt_job_run`, the manual `mnt()`, and `mnt_run_all`. Each loop
/// counts its passes in `passes`.
fn start_maintenance(
    client: &Client,
    stop: &Arc<AtomicBool>,
    errors: &Errors,
    passes: &Arc<AtomicU64>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for kind in 0..4 {
        let c = client.clone();
        let stop = stop.clone();
        let errors = errors.clone();
        let passes = passes.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match kind {
                    // the worker leader's call; a job that failed (deadlock
                    // victim, vanished table) shows as success = false
                    0 | 1 => match c.mnt_job_run(Duration::from_secs(300), 100).await {
                        Ok(run) if !run.success => {
                            record(&errors, "mnt_job_run", "a maintenance job failed");
                        }
                        Ok(_) => {}
                        Err(e) => record(&errors, "mnt_job_run", e),
                    },
                    2 => {
                        // mnt() swallows job failures as warnings: look at the
                        // errors the jobs left behind instead
                        if let Err(e) = c.mnt().await {
                            record(&errors, "mnt", e);
                        }
                    }
                    _ => {
                        if let Err(e) = sqlx::query("SELECT count(*) FROM fetchq.mnt_run_all(500)")
                            .execute(c.pool())
                            .await
                        {
                            record(&errors, "mnt_run_all", e);
                        }
                    }
                }
                passes.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tasks
}

/// Gives a queue work for every maintenance job: pending, due planned and
/// orphaned (lease expired) documents, logs and counters.
async fn fill(c: &Client, queue: &str) -> Result<(), fetchq_core::Error> {
    let docs: Vec<NewDoc> = (0..40).map(|i| NewDoc::new(format!("s{i:03}"))).collect();
    c.push_many(queue, &docs).await?;
    c.pick(queue, &PickOptions::new().limit(10)).await?;
    sqlx::raw_sql(&format!(
        "UPDATE fetchq_data.{queue}__docs SET next_iteration = now() - interval '1 hour' WHERE status = 2;
         UPDATE fetchq_data.{queue}__docs SET status = 0, next_iteration = now() - interval '1 second'
         WHERE status = 1 AND subject < 's020';"
    ))
    .execute(c.pool())
    .await?;
    Ok(())
}

/// Jobs that failed and are still there to tell (those of dropped queues went
/// with them; the test fails on the other counts then).
async fn job_errors(c: &Client) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('%s (%s): %s', task, queue, last_error) FROM fetchq.jobs WHERE last_error IS NOT NULL",
    )
    .fetch_all(c.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn queue_drop_never_deadlocks_with_maintenance() {
    let db = TestDb::with_pool_size(12).await;
    let stop = Arc::new(AtomicBool::new(false));
    let errors: Errors = Arc::default();
    let passes = Arc::new(AtomicU64::new(0));
    // a queue that lives through the whole test: its jobs keep running
    db.client.queue_create("keep").await.unwrap();
    fill(&db.client, "keep").await.unwrap();
    let maintenance = start_maintenance(&db.client, &stop, &errors, &passes);

    let rounds = 25;
    let mut droppers = Vec::new();
    for worker in 0..4 {
        let c = db.client.clone();
        let errors = errors.clone();
        droppers.push(tokio::spawn(async move {
            for round in 0..rounds {
                let queue = format!("d{worker}_{round}");
                let step = async {
                    assert!(c.queue_create(&queue).await?);
                    fill(&c, &queue).await?;
                    // let maintenance pick the new queue's jobs first, sometimes
                    if round % 2 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let dropped = c.queue_drop(&queue).await?;
                    assert!(dropped, "{queue} was not dropped");
                    Ok::<_, fetchq_core::Error>(())
                };
                if let Err(e) = step.await {
                    record(&errors, &format!("drop {queue}"), e);
                    // leave no half-made queue behind for the next rounds
                    let _ = c.queue_drop(&queue).await;
                }
            }
        }));
    }
    for d in droppers {
        d.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for m in maintenance {
        m.await.unwrap();
    }

    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    assert_eq!(job_errors(&db.client).await, Vec::<String>::new());
    assert!(
        passes.load(Ordering::Relaxed) >= 20,
        "maintenance ran only {} passes",
        passes.load(Ordering::Relaxed)
    );
    // nothing of the dropped queues is left
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM fetchq.queues WHERE name <> 'keep')
              + (SELECT count(*) FROM fetchq.jobs WHERE queue NOT IN ('keep', '*'))
              + (SELECT count(*) FROM fetchq.metrics WHERE queue <> 'keep')
              + (SELECT count(*) FROM fetchq.metrics_writes WHERE queue <> 'keep')
              + (SELECT count(*) FROM pg_tables WHERE schemaname = 'fetchq_data' AND tablename NOT LIKE 'keep\\_\\_%')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "leftovers of dropped queues");
    // the surviving queue is still maintained and consistent
    db.client.mnt().await.unwrap();
    let counts = db.client.metric_compute("keep").await.unwrap();
    assert_eq!(counts.total, 40);
}

#[tokio::test]
async fn truncate_reset_and_index_rebuilds_never_deadlock_with_maintenance() {
    let db = TestDb::with_pool_size(12).await;
    let stop = Arc::new(AtomicBool::new(false));
    let errors: Errors = Arc::default();
    let passes = Arc::new(AtomicU64::new(0));
    let queues = ["ta", "tb", "tc"];
    for q in queues {
        db.client.queue_create(q).await.unwrap();
        fill(&db.client, q).await.unwrap();
    }
    let maintenance = start_maintenance(&db.client, &stop, &errors, &passes);

    let mut repairers = Vec::new();
    // one repairer per queue (two concurrent queue_create_indexes of one
    // queue race in the catalog, a different matter), truncate_all over all
    for (worker, queue) in queues.into_iter().enumerate() {
        let c = db.client.clone();
        let errors = errors.clone();
        repairers.push(tokio::spawn(async move {
            for round in 0..30usize {
                let step = async {
                    match (worker + round) % 5 {
                        0 => c.queue_truncate(queue, true).await?,
                        1 => {
                            sqlx::query("SELECT fetchq.queue_truncate_all(true)")
                                .execute(c.pool())
                                .await?;
                        }
                        2 => {
                            c.metric_reset(queue).await?;
                        }
                        3 => {
                            sqlx::query("SELECT fetchq.queue_drop_indexes($1)")
                                .bind(queue)
                                .execute(c.pool())
                                .await?;
                            sqlx::query("SELECT fetchq.queue_create_indexes($1)")
                                .bind(queue)
                                .execute(c.pool())
                                .await?;
                        }
                        _ => c.queue_truncate(queue, false).await?,
                    }
                    // refill with new subjects (a push of an existing one is a no-op)
                    let docs: Vec<NewDoc> = (0..20)
                        .map(|i| NewDoc::new(format!("w{worker}r{round}s{i}")))
                        .collect();
                    c.push_many(queue, &docs).await?;
                    c.pick(queue, &PickOptions::new().limit(5)).await?;
                    sqlx::raw_sql(&format!(
                        "UPDATE fetchq_data.{queue}__docs SET next_iteration = now() - interval '1 hour' WHERE status = 2"
                    ))
                    .execute(c.pool())
                    .await?;
                    Ok::<_, fetchq_core::Error>(())
                };
                if let Err(e) = step.await {
                    record(&errors, &format!("round {round} on {queue}"), e);
                }
            }
        }));
    }
    for r in repairers {
        r.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for m in maintenance {
        m.await.unwrap();
    }

    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    assert_eq!(job_errors(&db.client).await, Vec::<String>::new());
    assert!(passes.load(Ordering::Relaxed) >= 20);
    // the counters still match the documents
    db.client.mnt().await.unwrap();
    for q in queues {
        let computed = db.client.metric_compute(q).await.unwrap();
        let repaired = db.client.metric_reset(q).await.unwrap();
        assert_eq!(computed, repaired, "{q}");
    }
}

#[tokio::test]
async fn concurrent_index_rebuilds_of_one_queue_take_turns() {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    fill(&db.client, "q").await.unwrap();
    for round in 0..8 {
        sqlx::query("SELECT * FROM fetchq.queue_drop_indexes('q')")
            .execute(db.client.pool())
            .await
            .unwrap();
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let pool = db.client.pool().clone();
                tokio::spawn(async move {
                    sqlx::query_scalar::<_, bool>(
                        "SELECT was_created FROM fetchq.queue_create_indexes('q')",
                    )
                    .fetch_one(&pool)
                    .await
                })
            })
            .collect();
        for call in calls {
            let created = call.await.unwrap();
            assert!(matches!(created, Ok(true)), "round {round}: {created:?}");
        }
        let indexes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'fetchq_data' AND tablename = 'q__docs'",
        )
        .fetch_one(db.client.pool())
        .await
        .unwrap();
        assert_eq!(
            indexes, 5,
            "round {round}: the primary key and four partial indexes"
        );
    }
}
