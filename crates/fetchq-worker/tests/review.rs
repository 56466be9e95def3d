//! Adversarial review of the fault fixes: shutdown while a write is blocked,
//! transient errors that must not reject a document.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::time::{Duration, Instant};

use fetchq_core::{NewDoc, Status};
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{count, error_logs, eventually, handler};

/// A completion blocked in the database (a row lock held by someone else, a
/// hung connection) must not keep shutdown past its deadline.
#[tokio::test]
async fn shutdown_ends_within_its_deadline_while_a_write_is_blocked() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    // completions wait while the test holds advisory lock 4243
    sqlx::raw_sql(
        "CREATE FUNCTION public.gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(4243); RETURN NEW; END $$;
         CREATE TRIGGER gate BEFORE UPDATE ON fetchq_data.q__docs
         FOR EACH ROW WHEN (NEW.status = 3) EXECUTE FUNCTION public.gate();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut gate = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4243)")
        .execute(&mut *gate)
        .await
        .unwrap();
    c.push("q", &NewDoc::new("a")).await.unwrap();
    let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
        Box::pin(async move { Ok(Outcome::complete()) })
    });
    let grace = Duration::from_secs(2);
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(grace)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "picked", || async {
        stats.total().picked >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    stop.cancel();
    let ended = tokio::time::timeout(grace + Duration::from_secs(8), run).await;
    let took = asked.elapsed();
    sqlx::query("SELECT pg_advisory_unlock(4243)")
        .execute(&mut *gate)
        .await
        .unwrap();
    assert!(
        ended.is_ok(),
        "shutdown did not end while the write was blocked (waited {took:?})"
    );
    ended.unwrap().unwrap().unwrap();
    assert!(
        took <= grace + Duration::from_millis(700),
        "shutdown took {took:?}, over {grace:?}"
    );
}

/// Completions of "a" fail twice with `code` (the batch, then the write
/// on its own), then succeed.
async fn fail_once(pool: &sqlx::PgPool, code: &str) {
    sqlx::raw_sql(&format!(
        "CREATE SEQUENCE public.failed;
         CREATE FUNCTION public.fail() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           -- a sequence remembers even though this transaction rolls back
           IF nextval('public.failed') <= 2 THEN
             RAISE EXCEPTION 'blip' USING ERRCODE = '{code}';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER fail BEFORE UPDATE ON fetchq_data.q__docs
         FOR EACH ROW WHEN (NEW.status = 3) EXECUTE FUNCTION public.fail();"
    ))
    .execute(pool)
    .await
    .unwrap();
}

async fn a_blip_does_not_reject(code: &str) {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    fail_once(&db.pool, code).await;
    c.push("q", &NewDoc::new("a")).await.unwrap();
    let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
        Box::pin(async move { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(Duration::from_secs(2))
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(15), "a settled", || async {
        count(&c, "q", 2).await == 0 && stats.total().picked >= 1
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let doc = c.get("q", "a").await.unwrap();
    let logs = error_logs(&c, "q", "a").await;
    assert_eq!(
        (doc.status, stats.total().refused, stats.total().completed),
        (Status::Completed, 0, 1),
        "a {code} blip must be retried, not turned into a reject: {logs:?}"
    );
}

/// statement_timeout (or a cancel request) hit a completion once.
#[tokio::test]
async fn a_statement_timeout_is_retried_not_rejected() {
    a_blip_does_not_reject("57014").await;
}

/// lock_timeout hit a completion once.
#[tokio::test]
async fn a_lock_timeout_is_retried_not_rejected() {
    a_blip_does_not_reject("55P03").await;
}

/// A heartbeat that races the write of an outcome (its extension waits behind
/// the completion, then finds the lease gone) must not count the document as
/// both completed and lost.
#[tokio::test]
async fn a_heartbeat_racing_a_completion_does_not_count_a_lost_lease() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION public.gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(4244); RETURN NEW; END $$;
         CREATE TRIGGER gate BEFORE UPDATE ON fetchq_data.q__docs
         FOR EACH ROW WHEN (NEW.status = 3) EXECUTE FUNCTION public.gate();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut gate = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4244)")
        .execute(&mut *gate)
        .await
        .unwrap();
    c.push_many(
        "q",
        &(0..10)
            .map(|i| NewDoc::new(format!("d{i}")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let h = handler(
        HandlerOptions::new("q")
            .concurrency(10)
            .lease(Duration::from_millis(1200)),
        |_doc, _ctx| Box::pin(async move { Ok(Outcome::complete()) }),
    );
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(Duration::from_secs(3))
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "all picked", || async {
        stats.total().picked >= 10
    })
    .await;
    // past half of the lease: the heartbeat extends the waiting outcomes, and
    // its extension waits behind the blocked completion
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sqlx::query("SELECT pg_advisory_unlock(4244)")
        .execute(&mut *gate)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "all completed", || async {
        count(&c, "q", 3).await == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.total();
    assert_eq!((s.completed, s.lease_lost), (10, 0), "{s:?}");
}

/// An outcome retried after transient failures whose lease the heartbeat
/// finds lost meanwhile is one lost lease, not two.
#[tokio::test]
async fn a_lease_lost_while_its_outcome_is_retried_is_counted_once() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    // every completion fails with a serialization failure (transient), even
    // one that would find nothing to complete
    sqlx::raw_sql(
        "CREATE FUNCTION public.fail() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF current_query() LIKE '%doc_complete_many%' THEN
             RAISE EXCEPTION 'try again' USING ERRCODE = '40001';
           END IF;
           RETURN NULL;
         END $$;
         CREATE TRIGGER fail BEFORE UPDATE ON fetchq_data.q__docs
         FOR EACH STATEMENT EXECUTE FUNCTION public.fail();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    c.push("q", &NewDoc::new("stuck")).await.unwrap();
    let h = handler(
        HandlerOptions::new("q").lease(Duration::from_secs(2)),
        |_doc, _ctx| Box::pin(async move { Ok(Outcome::complete()) }),
    );
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .maintenance(None)
        .shutdown_timeout(Duration::from_secs(2))
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(5), "stuck picked", || async {
        stats.total().picked >= 1
    })
    .await;
    // someone else takes the lease over (as after an expiry and a new pick)
    sqlx::query(
        "UPDATE fetchq_data.q__docs SET lease_token = gen_random_uuid() WHERE subject = 'stuck'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // the heartbeat notices (past half of the lease), then the completer's
    // next retry drops the outcome
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let s = stats.total();
    assert_eq!((s.lease_lost, s.completed), (1, 0), "{s:?}");
}
