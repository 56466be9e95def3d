//! The FetchQ v4 SQL test suite (`tests/*.test.sql` of fetchq/pg-extension,
//! the 74 cases its runner executes), ported: one test per v4 case, named after
//! it, each on its own database and inside one transaction as the v4 runner
//! did (so `now()` is fixed through a case, as in v4). The calls are the v4
//! calls; the assertions are v4's, except where this engine deviates on
//! purpose: those tests say "Deviation" and assert this engine's behaviour.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq_testing::TestDb;
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};

/// One v4 case: a fresh database and one connection inside a transaction.
struct Case {
    c: PoolConnection<Postgres>,
    _db: TestDb,
}

async fn case() -> Case {
    let db = TestDb::new().await;
    let mut c = db.pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut *c).await.unwrap();
    Case { c, _db: db }
}

impl Case {
    /// Runs statements (`;`-separated), panicking with the error.
    async fn run(&mut self, sql: &str) {
        if let Err(e) = sqlx::raw_sql(sql).execute(&mut *self.c).await {
            panic!("{sql}: {e}");
        }
    }

    /// The single value of a one-column, one-row query, as bigint.
    async fn int(&mut self, sql: &str) -> i64 {
        let q = format!("SELECT v::bigint FROM ({sql}) AS s(v)");
        match sqlx::query_scalar::<_, Option<i64>>(&q)
            .fetch_one(&mut *self.c)
            .await
        {
            Ok(v) => v.unwrap_or_else(|| panic!("{sql}: NULL")),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// The single value of a one-column, one-row query, as text (NULL is None).
    async fn text(&mut self, sql: &str) -> Option<String> {
        let q = format!("SELECT v::text FROM ({sql}) AS s(v)");
        match sqlx::query_scalar::<_, Option<String>>(&q)
            .fetch_one(&mut *self.c)
            .await
        {
            Ok(v) => v,
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// The single value of a one-column, one-row query, as boolean.
    async fn flag(&mut self, sql: &str) -> bool {
        let q = format!("SELECT v::boolean FROM ({sql}) AS s(v)");
        match sqlx::query_scalar::<_, Option<bool>>(&q)
            .fetch_one(&mut *self.c)
            .await
        {
            Ok(v) => v.unwrap_or_else(|| panic!("{sql}: NULL")),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// How many rows a query returns.
    async fn rows(&mut self, sql: &str) -> usize {
        match sqlx::query(sql).fetch_all(&mut *self.c).await {
            Ok(rows) => rows.len(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// The first column (text) of every row.
    async fn column(&mut self, sql: &str) -> Vec<String> {
        match sqlx::query(sql).fetch_all(&mut *self.c).await {
            Ok(rows) => rows.iter().map(|r| r.get::<String, _>(0)).collect(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// A packed counter (`metric_get(q, m).current_value`).
    async fn metric(&mut self, queue: &str, metric: &str) -> i64 {
        self.int(&format!(
            "SELECT current_value FROM fetchq.metric_get('{queue}', '{metric}')"
        ))
        .await
    }

    /// `SELECT count(*) FROM <from_where>`.
    async fn count(&mut self, from_where: &str) -> i64 {
        self.int(&format!("SELECT count(*) FROM {from_where}"))
            .await
    }

    /// The SQLSTATE of a statement that must fail (the transaction goes on).
    async fn error(&mut self, sql: &str) -> String {
        self.run("SAVEPOINT expect_error").await;
        let r = sqlx::raw_sql(sql).execute(&mut *self.c).await;
        self.run("ROLLBACK TO SAVEPOINT expect_error").await;
        match r {
            Ok(_) => panic!("{sql}: succeeded, an error was expected"),
            Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().into_owned(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

// ---------------------------------------------------------------- init, queues

#[tokio::test]
async fn init() {
    let mut t = case().await;
    assert!(t.flag("SELECT was_initialized FROM fetchq.init()").await);
    assert!(t.flag("SELECT was_initialized FROM fetchq.init()").await);
    for table in ["queues", "metrics", "metrics_writes", "jobs"] {
        t.count(&format!("fetchq.{table}")).await;
    }
    assert_eq!(t.count("fetchq.jobs WHERE task = 'lgp'").await, 1);
}

/// Deviation: a queue gets 3 maintenance jobs (mnt, sts, drp); v4 also created
/// a `cmp` job that its job runner did not know and skipped.
#[tokio::test]
async fn queue_create_01_deviation_three_jobs() {
    let mut t = case().await;
    assert!(
        t.flag("SELECT was_created FROM fetchq.queue_create('foo')")
            .await
    );
    for table in ["foo__docs", "foo__metrics", "foo__logs"] {
        t.count(&format!("fetchq_data.{table}")).await;
    }
    let tasks = t
        .column("SELECT task::text FROM fetchq.jobs WHERE queue = 'foo' ORDER BY task")
        .await;
    assert_eq!(tasks, ["drp", "mnt", "sts"]);
}

/// Deviation: an invalid name (41 characters) raises FQ001; v4 returned
/// was_created = false.
#[tokio::test]
async fn queue_create_02_deviation_long_name_raises() {
    let mut t = case().await;
    let code = t
        .error("SELECT * FROM fetchq.queue_create('f1234567891234567891234567899999999999999')")
        .await;
    assert_eq!(code, "FQ001");
    assert_eq!(t.count("fetchq.queues").await, 0);
}

#[tokio::test]
async fn queue_create_03() {
    let mut t = case().await;
    let name = "f12345678912345678912345678999999999999a";
    assert_eq!(name.len(), 40);
    assert!(
        t.flag(&format!(
            "SELECT was_created FROM fetchq.queue_create('{name}')"
        ))
        .await
    );
}

/// Deviation (index layout): the documents table has the primary key and 4
/// partial indexes (v4: 6 indexes); drop/create leave 1 and restore 5.
#[tokio::test]
async fn queue_create_indexes_01() {
    let mut t = case().await;
    let indexes = "pg_indexes WHERE schemaname = 'fetchq_data' AND tablename = 'foo__docs'";
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert!(
        t.flag("SELECT was_dropped FROM fetchq.queue_drop_indexes('foo')")
            .await
    );
    assert_eq!(t.count(indexes).await, 1);
    assert!(
        t.flag("SELECT was_created FROM fetchq.queue_create_indexes('foo')")
            .await
    );
    assert_eq!(t.count(indexes).await, 5);
    // again, and in v4's long form: nothing more to create
    assert!(
        t.flag("SELECT was_created FROM fetchq.queue_create_indexes('foo', 0, 5)")
            .await
    );
    assert_eq!(t.count(indexes).await, 5);
    // picks still work after a drop and a re-create
    t.run("SELECT fetchq.queue_drop_indexes('foo'); SELECT fetchq.doc_push('foo', 'a', 0, 0, now() - interval '1s', '{}')").await;
    assert_eq!(
        t.rows("SELECT * FROM fetchq.doc_pick('foo', 0, 1, '5m')")
            .await,
        1
    );
    t.run("SELECT fetchq.queue_create_indexes('foo')").await;
    assert_eq!(t.count(indexes).await, 5);
}

#[tokio::test]
async fn queue_drop_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() + interval '1m', '{}');
         SELECT fetchq.metric_log_pack();
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() + interval '1m', '{}');",
    )
    .await;
    assert!(
        t.flag("SELECT was_dropped FROM fetchq.queue_drop('foo')")
            .await
    );
    assert_eq!(t.count("fetchq.queues WHERE name = 'foo'").await, 0);
    assert_eq!(t.count("fetchq.jobs WHERE queue = 'foo'").await, 0);
    assert_eq!(
        t.count("fetchq.metrics_writes WHERE queue = 'foo'").await,
        0
    );
    assert_eq!(t.count("fetchq.metrics WHERE queue = 'foo'").await, 0);
}

#[tokio::test]
async fn queue_drop_02() {
    let mut t = case().await;
    let created = t
        .int("SELECT queue_id FROM fetchq.queue_create('foo')")
        .await;
    let dropped = t
        .text("SELECT was_dropped::text || ' ' || queue_id FROM fetchq.queue_drop('foo')")
        .await;
    assert_eq!(dropped, Some(format!("true {created}")));
}

async fn push_top_fixture(t: &mut Case) {
    t.run(
        "SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() + interval '1m', '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() + interval '1m', '{}');
         SELECT fetchq.doc_push('foo', 'a3', 0, 0, now() + interval '1m', '{}');
         SELECT fetchq.doc_push('foo', 'a4', 1, 0, now() + interval '1m', '{}');
         SELECT fetchq.doc_push('foo', 'a5', 1, 0, now() + interval '1m', '{}');
         SELECT fetchq.doc_push('foo', 'a6', 1, 0, now() + interval '1m', '{}');",
    )
    .await;
}

async fn assert_top(t: &mut Case) {
    assert_eq!(
        t.rows("SELECT * FROM fetchq.queue_top('foo', 0, 3, 0)")
            .await,
        3
    );
    assert_eq!(
        t.rows("SELECT * FROM fetchq.queue_top('foo', 1, 2, 0)")
            .await,
        2
    );
    assert_eq!(
        t.text("SELECT subject FROM fetchq.queue_top('foo', 1, 1, 1)")
            .await
            .as_deref(),
        Some("a5")
    );
}

#[tokio::test]
async fn queue_top_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    push_top_fixture(&mut t).await;
    assert_top(&mut t).await;
    // pick order: a higher priority comes first, whatever its subject
    t.run("SELECT fetchq.doc_push('foo', 'z9', 1, 7, now() + interval '1m', '{}')")
        .await;
    let top = t
        .column("SELECT subject::text FROM fetchq.queue_top('foo', 1, 10, 0)")
        .await;
    assert_eq!(top, ["z9", "a4", "a5", "a6"]);
    assert_eq!(
        t.error("SELECT * FROM fetchq.queue_top('foo', 0, -1, 0)")
            .await,
        "FQ004"
    );
    assert_eq!(
        t.error("SELECT * FROM fetchq.queue_top('nope', 0, 1, 0)")
            .await,
        "FQ002"
    );
}

/// v4's trigger case: with notifications enabled the queue still works; here
/// the notifications themselves are checked too (on committed writes).
#[tokio::test]
async fn queue_triggers_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.queue_enable_notify('foo');
         SELECT fetchq.doc_push('foo', 'doc1', 0, 0, now() - interval '1s', '{\"foo\": 123}');",
    )
    .await;
    assert_eq!(
        t.text("SELECT subject FROM fetchq.doc_pick('foo', 0, 1, '1ms')")
            .await
            .as_deref(),
        Some("doc1")
    );
    push_top_fixture(&mut t).await;
    assert_top(&mut t).await;
}

#[tokio::test]
async fn queue_triggers_01_notifications_arrive() {
    let db = TestDb::new().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool)
        .await
        .unwrap();
    listener
        .listen_all([
            "fetchq__foo__pln",
            "fetchq__foo__pnd",
            "fetchq__foo__act",
            "fetchq__foo__cpl",
        ])
        .await
        .unwrap();
    let exec = |sql: &'static str| {
        let pool = db.pool.clone();
        async move { sqlx::raw_sql(sql).execute(&pool).await.unwrap() }
    };
    exec("SELECT fetchq.queue_create('foo')").await;
    let enabled: bool = sqlx::query_scalar("SELECT success FROM fetchq.queue_enable_notify('foo')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(enabled);
    // enabling twice keeps one trigger per event
    exec("SELECT fetchq.queue_enable_notify('foo')").await;
    exec("SELECT fetchq.doc_push('foo', 'later', 0, 0, now() + interval '1h', '{}')").await;
    exec("SELECT fetchq.doc_push('foo', 'now', 0, 0, now() - interval '1s', '{}')").await;
    exec("SELECT * FROM fetchq.doc_pick('foo', 0, 1, '5m')").await;
    exec("SELECT fetchq.doc_complete('foo', 'now')").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), listener.recv())
            .await
            .expect("a notification within 30 s")
            .unwrap();
        got.push(format!("{} {}", n.channel(), n.payload()));
    }
    assert_eq!(
        got,
        [
            "fetchq__foo__pln later",
            "fetchq__foo__pnd now",
            "fetchq__foo__act now",
            "fetchq__foo__cpl now"
        ]
    );
    // disabled: a push sends nothing on these channels (a marker comes first)
    exec("SELECT fetchq.queue_disable_notify('foo')").await;
    exec("SELECT fetchq.doc_push('foo', 'quiet', 0, 0, now() - interval '1s', '{}')").await;
    exec("SELECT pg_notify('fetchq__foo__cpl', 'marker')").await;
    let n = tokio::time::timeout(std::time::Duration::from_secs(30), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.payload(), "marker");
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'fetchq_data.foo__docs'::regclass AND NOT tgisinternal",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(count, 0);
}

/// A queue whose documents were set up for the truncate cases: a1 planned,
/// a2 pending, one log line, maintenance and a snapshot done.
async fn truncate_fixture(t: &mut Case, queue: &str, planned: bool, pending: bool) {
    t.run(&format!("SELECT fetchq.queue_create('{queue}')"))
        .await;
    if planned {
        t.run(&format!(
            "SELECT fetchq.doc_push('{queue}', 'a1', 0, 0, now() + interval '1m', '{{}}')"
        ))
        .await;
    }
    if pending {
        t.run(&format!(
            "SELECT fetchq.doc_push('{queue}', 'a2', 0, 0, now() - interval '1m', '{{}}')"
        ))
        .await;
    }
    t.run(&format!(
        "SELECT fetchq.log_error('{queue}', 'a1', 'some error', '{{\"a\":1}}')"
    ))
    .await;
}

/// v4 expected 5 snapshot rows where `mnt()` (whose sts job snapshots) and the
/// explicit `metric_snap` both write theirs: v4 itself fails it. The ported
/// assertions: counters reset, snapshots, logs and jobs untouched.
#[tokio::test]
async fn queue_truncate_01() {
    let mut t = case().await;
    truncate_fixture(&mut t, "foo", true, true).await;
    t.run("SELECT fetchq.mnt(); SELECT fetchq.metric_snap('foo')")
        .await;
    assert_eq!(t.metric("foo", "cnt").await, 2);
    assert_eq!(t.count("fetchq_data.foo__logs").await, 1);
    let snaps = t.count("fetchq_data.foo__metrics").await;
    assert!(snaps > 0);
    // deviation: 3 jobs per queue (v4: 4, see queue_create_01)
    assert_eq!(
        t.count("fetchq.jobs WHERE queue = 'foo' AND iterations > 0")
            .await,
        3
    );

    assert!(
        t.flag("SELECT success FROM fetchq.queue_truncate('foo')")
            .await
    );
    assert_eq!(t.metric("foo", "cnt").await, 0);
    assert_eq!(t.count("fetchq_data.foo__docs").await, 0);
    assert_eq!(t.count("fetchq_data.foo__metrics").await, snaps);
    assert_eq!(t.count("fetchq_data.foo__logs").await, 1);
    assert_eq!(
        t.count("fetchq.jobs WHERE queue = 'foo' AND iterations > 0")
            .await,
        3
    );
}

/// v4 fails its own snapshot count here too (see queue_truncate_01). v4 also
/// reset the queue's jobs on `empty`; that is not asserted (see the report).
#[tokio::test]
async fn queue_truncate_02() {
    let mut t = case().await;
    truncate_fixture(&mut t, "foo", true, true).await;
    t.run("UPDATE fetchq.jobs SET next_iteration = now() - interval '1h' WHERE queue = 'foo'")
        .await;
    t.run("SELECT fetchq.mnt(); SELECT fetchq.metric_snap('foo')")
        .await;
    assert_eq!(t.metric("foo", "cnt").await, 2);
    assert!(t.count("fetchq_data.foo__metrics").await > 0);
    assert_eq!(t.count("fetchq_data.foo__logs").await, 1);

    assert!(
        t.flag("SELECT success FROM fetchq.queue_truncate('foo', true)")
            .await
    );
    assert_eq!(t.metric("foo", "cnt").await, 0);
    assert_eq!(t.count("fetchq_data.foo__metrics").await, 0);
    assert_eq!(t.count("fetchq_data.foo__logs").await, 0);
}

#[tokio::test]
async fn queue_truncate_all_01() {
    let mut t = case().await;
    truncate_fixture(&mut t, "foo", true, false).await;
    truncate_fixture(&mut t, "faa", false, true).await;
    t.run(
        "SELECT fetchq.mnt(); SELECT fetchq.metric_snap('foo'); SELECT fetchq.metric_snap('faa')",
    )
    .await;
    let mut snaps = Vec::new();
    for q in ["foo", "faa"] {
        assert_eq!(t.metric(q, "cnt").await, 1);
        assert_eq!(t.count(&format!("fetchq_data.{q}__logs")).await, 1);
        let n = t.count(&format!("fetchq_data.{q}__metrics")).await;
        assert!(n > 0);
        snaps.push(n);
    }
    assert!(
        t.flag("SELECT success FROM fetchq.queue_truncate_all()")
            .await
    );
    for (q, n) in ["foo", "faa"].into_iter().zip(snaps) {
        assert_eq!(t.metric(q, "cnt").await, 0);
        assert_eq!(t.count(&format!("fetchq_data.{q}__docs")).await, 0);
        assert_eq!(t.count(&format!("fetchq_data.{q}__metrics")).await, n);
        assert_eq!(t.count(&format!("fetchq_data.{q}__logs")).await, 1);
        assert_eq!(
            t.count(&format!(
                "fetchq.jobs WHERE queue = '{q}' AND iterations > 0"
            ))
            .await,
            3
        );
    }
}

#[tokio::test]
async fn queue_truncate_all_02() {
    let mut t = case().await;
    truncate_fixture(&mut t, "foo", true, false).await;
    truncate_fixture(&mut t, "faa", false, true).await;
    t.run(
        "SELECT fetchq.mnt(); SELECT fetchq.metric_snap('foo'); SELECT fetchq.metric_snap('faa')",
    )
    .await;
    for q in ["foo", "faa"] {
        assert_eq!(t.metric(q, "cnt").await, 1);
        assert!(t.count(&format!("fetchq_data.{q}__metrics")).await > 0);
        assert_eq!(t.count(&format!("fetchq_data.{q}__logs")).await, 1);
    }
    assert!(
        t.flag("SELECT success FROM fetchq.queue_truncate_all(true)")
            .await
    );
    for q in ["foo", "faa"] {
        assert_eq!(t.metric(q, "cnt").await, 0);
        assert_eq!(t.count(&format!("fetchq_data.{q}__metrics")).await, 0);
        assert_eq!(t.count(&format!("fetchq_data.{q}__logs")).await, 0);
    }
}

#[tokio::test]
async fn queue_status_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo'); SELECT fetchq.queue_create('faa')")
        .await;
    assert_eq!(t.rows("SELECT * FROM fetchq.queue_status()").await, 2);
    assert_eq!(t.rows("SELECT * FROM fetchq.queue_status('foo')").await, 1);
    assert!(
        t.flag("SELECT is_active FROM fetchq.queue_status('foo')")
            .await
    );
}

#[tokio::test]
async fn queue_set_max_attempts_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_set_max_attempts('foo', 1)")
            .await,
        1
    );
    assert_eq!(
        t.count("fetchq.queues WHERE name = 'foo' AND max_attempts = 1")
            .await,
        1
    );
}

#[tokio::test]
async fn queue_set_current_version_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_set_current_version('foo', 1)")
            .await,
        1
    );
    assert_eq!(
        t.count("fetchq.queues WHERE name = 'foo' AND current_version = 1")
            .await,
        1
    );
}

#[tokio::test]
async fn queue_drop_version_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo'); SELECT fetchq.queue_set_current_version('foo', 1)")
        .await;
    assert!(
        t.flag("SELECT was_dropped FROM fetchq.queue_drop_version('foo', 0)")
            .await
    );
}

#[tokio::test]
async fn queue_drop_version_02() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert!(
        !t.flag("SELECT was_dropped FROM fetchq.queue_drop_version('foo', 0)")
            .await
    );
    assert_eq!(
        t.error("SELECT * FROM fetchq.queue_drop_version('nope', 0)")
            .await,
        "FQ002"
    );
}

async fn logs_fixture(t: &mut Case) {
    t.run(
        "SELECT fetchq.queue_create('foo');
         INSERT INTO fetchq_data.foo__logs (created_at, subject, message) VALUES
            (now(), 'a', 'b'), (now() - interval '1d', 'a', 'b'), (now() - interval '2d', 'a', 'b');",
    )
    .await;
}

#[tokio::test]
async fn queue_drop_logs_01() {
    let mut t = case().await;
    logs_fixture(&mut t).await;
    // an untyped literal, as v4 callers write it
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_drop_logs('foo', '24 hours')")
            .await,
        1
    );
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_drop_logs('foo', '1h')")
            .await,
        1
    );
    assert_eq!(t.count("fetchq_data.foo__logs").await, 1);
    // a timestamp literal is a point in time; garbage is FQ004
    t.run("INSERT INTO fetchq_data.foo__logs (created_at, subject, message) VALUES ('2001-01-01', 'a', 'b')").await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_drop_logs('foo', '2002-01-01 00:00:00+00')")
            .await,
        1
    );
    assert_eq!(
        t.error("SELECT * FROM fetchq.queue_drop_logs('foo', 'yesterday-ish')")
            .await,
        "FQ004"
    );
    // NULL keeps the queue's retention (24 hours): the fresh row stays
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_drop_logs('foo', NULL)")
            .await,
        0
    );
}

#[tokio::test]
async fn queue_drop_logs_02() {
    let mut t = case().await;
    logs_fixture(&mut t).await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_drop_logs('foo', now() - interval '24h')")
            .await,
        1
    );
}

#[tokio::test]
async fn queue_drop_logs_03() {
    let mut t = case().await;
    logs_fixture(&mut t).await;
    t.run("SELECT fetchq.queue_set_logs_retention('foo', '1h')")
        .await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.queue_drop_logs('foo')")
            .await,
        2
    );
}

async fn metrics_fixture(t: &mut Case, with_now: bool) {
    t.run("SELECT fetchq.queue_create('foo')").await;
    let first = if with_now {
        "now()"
    } else {
        "now() - interval '10 seconds'"
    };
    t.run(&format!(
        "INSERT INTO fetchq_data.foo__metrics (created_at, metric, value) VALUES
            ({first}, 'a', 1), (now() - interval '20 seconds', 'a', 2), (now() - interval '30 seconds', 'a', 3),
            (now() - interval '60 seconds', 'b', 1), (now() - interval '70 seconds', 'b', 2),
            (now() - interval '2 hours', 'c', 1), (now() - interval '2 hours 10 minutes', 'c', 2),
            (now() - interval '2 hours 20 minutes', 'c', 3),
            (now() - interval '3 hours', 'd', 1), (now() - interval '3 hours 10 minutes', 'd', 2),
            (now() - interval '3 hours 20 minutes', 'd', 3)"
    ))
    .await;
}

/// v4 only printed a notice here. The buckets depend on the clock, so the
/// bounds: a, c and d each span at most two buckets (at least one row goes
/// each), and every metric keeps its newest row.
async fn assert_metrics_thinned(t: &mut Case, removed: i64) {
    assert!((3..=7).contains(&removed), "removed {removed}");
    assert_eq!(t.count("fetchq_data.foo__metrics").await, 11 - removed);
    assert_eq!(
        t.count("(SELECT DISTINCT metric FROM fetchq_data.foo__metrics) AS m")
            .await,
        4
    );
}

#[tokio::test]
async fn queue_drop_metrics_01() {
    let mut t = case().await;
    metrics_fixture(&mut t, false).await;
    let removed = t
        .int(r#"SELECT removed_rows FROM fetchq.queue_drop_metrics('foo',
                '[{"retain":"minute","from":"1h","to":"0s"},{"retain":"hour","from":"100y","to":"1h"}]'::jsonb)"#)
        .await;
    assert_metrics_thinned(&mut t, removed).await;
}

#[tokio::test]
async fn queue_drop_metrics_02() {
    let mut t = case().await;
    metrics_fixture(&mut t, true).await;
    t.run(r#"SELECT fetchq.queue_set_metrics_retention('foo',
             '[{"to":"0s","from":"1h","retain":"minute"},{"to":"1h","from":"100y","retain":"hour"}]')"#)
        .await;
    let removed = t
        .int("SELECT removed_rows FROM fetchq.queue_drop_metrics('foo')")
        .await;
    assert_metrics_thinned(&mut t, removed).await;
}

/// Deviation (index layout): 5 indexes before (v4: 6), 1 after.
#[tokio::test]
async fn queue_drop_indexes_01() {
    let mut t = case().await;
    let indexes = "pg_indexes WHERE schemaname = 'fetchq_data' AND tablename = 'foo__docs'";
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert_eq!(t.count(indexes).await, 5);
    assert!(
        t.flag("SELECT was_dropped FROM fetchq.queue_drop_indexes('foo')")
            .await
    );
    assert_eq!(t.count(indexes).await, 1);
    // dropping again is harmless
    assert!(
        t.flag("SELECT was_dropped FROM fetchq.queue_drop_indexes('foo')")
            .await
    );
    assert_eq!(
        t.error("SELECT * FROM fetchq.queue_drop_indexes('nope')")
            .await,
        "FQ002"
    );
}

#[tokio::test]
async fn utils_ts_retain_01() {
    let mut t = case().await;
    t.run(
        "CREATE TABLE fetchq_data.test_utils_ts_retain (id serial PRIMARY KEY, created_at timestamptz);
         INSERT INTO fetchq_data.test_utils_ts_retain (created_at) VALUES
           ('2010-10-01 12:00:00'), ('2010-10-01 12:00:10'), ('2010-10-01 12:00:30'),
           ('2010-10-01 12:01:00'), ('2010-10-01 12:01:10'), ('2010-10-01 12:01:30'),
           ('2010-11-01 12:00:00'), ('2010-11-01 12:20:00'), ('2010-11-01 12:40:00'),
           ('2010-11-01 13:00:00'), ('2010-11-01 13:20:00'), ('2010-11-01 13:40:00'),
           ('20120-11-01 13:40:00'), ('20120-11-01 13:40:01'), ('20120-11-01 13:40:02'),
           ('20120-11-01 13:40:03');",
    )
    .await;
    let a = t
        .int("SELECT removed_rows FROM fetchq.utils_ts_retain('fetchq_data.test_utils_ts_retain', 'created_at', 'minute', '2010-10-01 11:00:00', '2010-10-01 13:00:00')")
        .await;
    let b = t
        .int("SELECT removed_rows FROM fetchq.utils_ts_retain('fetchq_data.test_utils_ts_retain', 'created_at', 'hour', '2010-11-01 00:00:00', '2010-11-30 11:59:00')")
        .await;
    assert_eq!((a, b), (4, 4));
    assert_eq!(t.count("fetchq_data.test_utils_ts_retain").await, 8);
    // the newest row of each bucket is the one kept
    let kept = t
        .column("SELECT to_char(created_at, 'HH24:MI:SS') FROM fetchq_data.test_utils_ts_retain WHERE created_at < '2010-11-01' ORDER BY 1")
        .await;
    assert_eq!(kept, ["12:00:30", "12:01:30"]);
    // hostile input: an unknown unit, a table that does not exist, a quoted column
    assert_eq!(
        t.error("SELECT * FROM fetchq.utils_ts_retain('fetchq_data.test_utils_ts_retain', 'created_at', 'minute; DROP TABLE x', now(), now())").await,
        "FQ004"
    );
    assert_eq!(
        t.error("SELECT * FROM fetchq.utils_ts_retain('no_such_table', 'created_at', 'minute', now(), now())").await,
        "42P01"
    );
    assert_eq!(
        t.error("SELECT * FROM fetchq.utils_ts_retain('fetchq_data.test_utils_ts_retain', 'created_at) OR (true', 'minute', now(), now())").await,
        "42703"
    );
}

// ------------------------------------------------------------------- documents

#[tokio::test]
async fn doc_push_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert_eq!(
        t.int("SELECT queued_docs FROM fetchq.doc_push('foo', 'a1', 0, 0, now() + interval '1m', '{}')").await,
        1
    );
    assert_eq!(
        t.int("SELECT status FROM fetchq_data.foo__docs WHERE subject = 'a1'")
            .await,
        0
    );
    t.run("SELECT fetchq.metric_log_pack()").await;
    assert_eq!(t.metric("foo", "pln").await, 1);
}

#[tokio::test]
async fn doc_push_02() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo'); SELECT fetchq.queue_enable_notify('foo')")
        .await;
    assert_eq!(
        t.int("SELECT queued_docs FROM fetchq.doc_push('foo', 'a100', 0, 0, now() - interval '1m', '{}')").await,
        1
    );
    assert_eq!(
        t.int("SELECT status FROM fetchq_data.foo__docs WHERE subject = 'a100'")
            .await,
        1
    );
    t.run("SELECT fetchq.metric_log_pack()").await;
    assert_eq!(t.metric("foo", "pnd").await, 1);
}

/// v4's case is the bulk `doc_push(q, version, next_iteration, tuples)`, whose
/// body v4 had already commented out. Deviation (documented): the bulk form is
/// `doc_push_many(q, jsonb)`.
#[tokio::test]
async fn doc_push_03_deviation_bulk_is_push_many() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert!(
        t.flag("SELECT success FROM fetchq.queue_enable_notify('foo')")
            .await
    );
    let queued = t
        .int(r#"SELECT queued_docs FROM fetchq.doc_push_many('foo',
                '[{"subject":"a1","priority":0,"payload":{"a":1}},{"subject":"a2","priority":1,"payload":{"a":2}}]')"#)
        .await;
    assert_eq!(queued, 2);
    t.run("SELECT fetchq.metric_log_pack()").await;
    assert_eq!(t.metric("foo", "pnd").await, 2);
}

async fn push_short_form(call: &str) {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    t.run(call).await;
    t.run("SELECT fetchq.mnt(); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(t.metric("foo", "pnd").await, 1);
}

#[tokio::test]
async fn doc_push_04() {
    push_short_form("SELECT fetchq.doc_push('foo', 'd1')").await;
}

#[tokio::test]
async fn doc_push_05() {
    push_short_form(r#"SELECT fetchq.doc_push('foo', 'd1', '{"a": 1}')"#).await;
}

#[tokio::test]
async fn doc_push_06() {
    push_short_form(r#"SELECT fetchq.doc_push('foo', 'd1', '{"a":2}', now() - interval '5m')"#)
        .await;
}

/// v4 accepted the push or raised P0001 for a subject over 50 characters.
/// Deviation (documented): subjects are up to 255 characters, so 64 are
/// accepted; 256 raise FQ003.
#[tokio::test]
async fn doc_push_07_deviation_subjects_up_to_255() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    let s64 = "x".repeat(64);
    assert_eq!(
        t.int(&format!(
            r#"SELECT queued_docs FROM fetchq.doc_push('foo', '{s64}', '{{"a":2}}', now())"#
        ))
        .await,
        1
    );
    let s256 = "x".repeat(256);
    assert_eq!(
        t.error(&format!(
            r#"SELECT fetchq.doc_push('foo', '{s256}', '{{"a":2}}', now())"#
        ))
        .await,
        "FQ003"
    );
}

#[tokio::test]
async fn doc_append_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    let a = t
        .text(r#"SELECT subject FROM fetchq.doc_append('foo', '{"a":1}', 0, 0)"#)
        .await
        .unwrap();
    let b = t
        .text(r#"SELECT subject FROM fetchq.doc_append('foo', '{"a":2}', 0, 0)"#)
        .await
        .unwrap();
    assert_ne!(a, b);
    t.run("SELECT fetchq.mnt(); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(t.metric("foo", "pnd").await, 2);
}

#[tokio::test]
async fn doc_append_02() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    let mut subjects = std::collections::HashSet::new();
    for i in 1..=5 {
        let s = t
            .text(&format!(
                r#"SELECT subject FROM fetchq.doc_append('foo', '{{"a":1}}', 0, {i})"#
            ))
            .await
            .unwrap();
        subjects.insert(s);
    }
    assert_eq!(subjects.len(), 5);
    assert_eq!(t.count("fetchq_data.foo__docs").await, 5);
}

#[tokio::test]
async fn doc_append_03() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert!(
        t.text(r#"SELECT subject FROM fetchq.doc_append('foo', '{"a":1}')"#)
            .await
            .is_some()
    );
}

/// Deviation (documented: errors are raised): appending to a missing queue
/// raises FQ002; v4 returned a NULL subject.
#[tokio::test]
async fn doc_append_04_deviation_missing_queue_raises() {
    let mut t = case().await;
    assert_eq!(
        t.error(r#"SELECT * FROM fetchq.doc_append('foo', '{"a":1}')"#)
            .await,
        "FQ002"
    );
}

#[tokio::test]
async fn doc_upsert_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert_eq!(
        t.int("SELECT queued_docs FROM fetchq.doc_upsert('foo', 'a1', 0, 0, now() + interval '1m', '{}')").await,
        1
    );
    assert_eq!(
        t.int(r#"SELECT updated_docs FROM fetchq.doc_upsert('foo', 'a1', 0, 1, '2222-11-10 12:00', '{"a":1}')"#).await,
        1
    );
    assert_eq!(
        t.int("SELECT priority FROM fetchq_data.foo__docs WHERE subject = 'a1'")
            .await,
        1
    );
}

#[tokio::test]
async fn doc_upsert_02() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert_eq!(
        t.int("SELECT queued_docs FROM fetchq.doc_upsert('foo', 'a1', 0, 0, now() - interval '1m', '{}')").await,
        1
    );
    t.run("SELECT * FROM fetchq.doc_pick('foo', 0, 1, '5m')")
        .await;
    assert_eq!(
        t.int(r#"SELECT updated_docs FROM fetchq.doc_upsert('foo', 'a1', 0, 1, '2222-11-10 12:00', '{"a":1}')"#).await,
        0
    );
}

async fn picked(t: &mut Case, call: &str) -> Vec<String> {
    t.column(&format!("SELECT subject::text FROM {call}")).await
}

#[tokio::test]
async fn doc_pick_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() - interval '1s', '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() - interval '2s', '{}');",
    )
    .await;
    assert_eq!(
        picked(&mut t, "fetchq.doc_pick('foo', 0, 1, '5m')").await,
        ["a2"]
    );
}

#[tokio::test]
async fn doc_pick_02() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 1, now() - interval '1s', '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() - interval '1s', '{}');",
    )
    .await;
    assert_eq!(
        picked(&mut t, "fetchq.doc_pick('foo', 0, 1, '5m')").await,
        ["a1"]
    );
}

async fn three_due(t: &mut Case) {
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() - interval '1s', '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() - interval '1s', '{}');
         SELECT fetchq.doc_push('foo', 'a3', 0, 0, now() - interval '1s', '{}');",
    )
    .await;
}

#[tokio::test]
async fn doc_pick_03() {
    let mut t = case().await;
    three_due(&mut t).await;
    assert_eq!(
        picked(&mut t, "fetchq.doc_pick('foo', 0, 2, '5m')")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn doc_pick_04() {
    let mut t = case().await;
    three_due(&mut t).await;
    t.run(
        "SELECT fetchq.doc_push('foo', 'a4', 0, 0, now() + interval '1s', '{}');
         SELECT * FROM fetchq.doc_pick('foo', 0, 2, '5m');
         SELECT fetchq.metric_log_pack();",
    )
    .await;
    assert_eq!(t.metric("foo", "cnt").await, 4);
    assert_eq!(t.metric("foo", "act").await, 2);
    assert_eq!(t.metric("foo", "pnd").await, 1);
    assert_eq!(t.metric("foo", "pln").await, 1);
}

async fn two_due(t: &mut Case) {
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() - interval '50s', '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() - interval '40s', '{}');",
    )
    .await;
}

#[tokio::test]
async fn doc_pick_05() {
    let mut t = case().await;
    two_due(&mut t).await;
    assert_eq!(
        picked(&mut t, "fetchq.doc_pick('foo', 0, 1, '5m')").await,
        ["a1"]
    );
    assert_eq!(
        picked(&mut t, "fetchq.doc_pick('foo', 0, 1, '5m')").await,
        ["a2"]
    );
}

/// v4 names this "pick with a custom lock": the `(q, duration)` short form.
#[tokio::test]
async fn doc_pick_06() {
    let mut t = case().await;
    two_due(&mut t).await;
    assert_eq!(picked(&mut t, "fetchq.doc_pick('foo', '5m')").await, ["a1"]);
    assert_eq!(
        picked(&mut t, "fetchq.doc_pick('foo', 0, 1, '5m')").await,
        ["a2"]
    );
    assert!(
        t.flag("SELECT next_iteration > now() + interval '4 minutes' FROM fetchq_data.foo__docs WHERE subject = 'a1'")
            .await
    );
}

/// v4: "pick with the default lock" (it too passes '5m').
#[tokio::test]
async fn doc_pick_07() {
    let mut t = case().await;
    two_due(&mut t).await;
    assert_eq!(picked(&mut t, "fetchq.doc_pick('foo', '5m')").await, ["a1"]);
    assert_eq!(
        picked(&mut t, "fetchq.doc_pick('foo', 0, 1, '5m')").await,
        ["a2"]
    );
}

#[tokio::test]
async fn doc_pick_08() {
    let mut t = case().await;
    two_due(&mut t).await;
    assert_eq!(picked(&mut t, "fetchq.doc_pick('foo', 2)").await.len(), 2);
}

async fn one_picked(t: &mut Case, priority: i32) {
    t.run(&format!(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, {priority}, now() - interval '1s', '{{}}');
         SELECT * FROM fetchq.doc_pick('foo', 0, 2, '5m');"
    ))
    .await;
}

#[tokio::test]
async fn doc_reschedule_01() {
    let mut t = case().await;
    one_picked(&mut t, 1).await;
    assert_eq!(
        t.int(
            "SELECT affected_rows FROM fetchq.doc_reschedule('foo', 'a1', now() + interval '1y')"
        )
        .await,
        1
    );
    assert_eq!(
        t.text(
            "SELECT status || ' ' || iterations FROM fetchq_data.foo__docs WHERE subject = 'a1'"
        )
        .await
        .as_deref(),
        Some("0 1")
    );
}

#[tokio::test]
async fn doc_reschedule_02() {
    let mut t = case().await;
    one_picked(&mut t, 1).await;
    t.run(r#"SELECT fetchq.doc_reschedule('foo', 'a1', now() + interval '1y', '{"a":1}')"#)
        .await;
    assert_eq!(
        t.count(r#"fetchq_data.foo__docs WHERE subject = 'a1' AND payload @> '{"a": 1}' AND iterations = 1"#)
            .await,
        1
    );
}

#[tokio::test]
async fn doc_reschedule_03() {
    let mut t = case().await;
    one_picked(&mut t, 0).await;
    let pick = "fetchq.doc_pick('foo', 0, 1, '5m')";
    t.run(r#"SELECT fetchq.doc_reschedule('foo', 'a1', now() - interval '1ms', '{"a":1}')"#)
        .await;
    assert_eq!(picked(&mut t, pick).await, ["a1"]);
    t.run("SELECT fetchq.doc_reschedule('foo', 'a1', now() - interval '1ms')")
        .await;
    assert_eq!(picked(&mut t, pick).await, ["a1"]);
    t.run(r#"SELECT fetchq.doc_reschedule('foo', 'a1', now(), '{"a":2}')"#)
        .await;
    assert_eq!(picked(&mut t, pick).await, ["a1"]);
    t.run("SELECT fetchq.doc_reschedule('foo', 'a1', now())")
        .await;
    assert_eq!(picked(&mut t, pick).await, ["a1"]);
    // due after now(), which stands still in this transaction
    t.run(r#"SELECT fetchq.doc_reschedule('foo', 'a1', now() + interval '1ms', '{"a":3}')"#)
        .await;
    assert!(picked(&mut t, pick).await.is_empty());
}

/// Deviation (documented): a rejected document waits for its retry backoff
/// (1 s at the first attempt by default) and is planned (0) meanwhile; v4 left
/// it pending (1) until its old lease (5 minutes here) ran out.
async fn reject_case(ref_id: Option<&str>) {
    let mut t = case().await;
    one_picked(&mut t, 1).await;
    let call = match ref_id {
        Some(r) => format!(r#"SELECT fetchq.doc_reject('foo', 'a1', 'foo', '{{"a":1}}', '{r}')"#),
        None => r#"SELECT fetchq.doc_reject('foo', 'a1', 'foo', '{"a":1}')"#.to_owned(),
    };
    t.run(&call).await;
    t.run("SELECT fetchq.mnt_run_all(100); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(
        t.count(
            "fetchq_data.foo__docs WHERE subject = 'a1' AND status = 0 AND iterations = 1
             AND next_iteration > now() AND next_iteration < now() + interval '300s'"
        )
        .await,
        1
    );
    let log_ref = match ref_id {
        Some(r) => format!("ref_id = '{r}'"),
        None => "ref_id IS NULL".to_owned(),
    };
    assert_eq!(
        t.count(&format!(
            "fetchq_data.foo__logs WHERE subject = 'a1' AND message = 'foo' AND {log_ref}"
        ))
        .await,
        1
    );
    assert_eq!(t.metric("foo", "pln").await, 1);
    assert_eq!(t.metric("foo", "rej").await, 1);
}

#[tokio::test]
async fn doc_reject_01_deviation_waits_for_backoff() {
    reject_case(None).await;
}

#[tokio::test]
async fn doc_reject_02_deviation_waits_for_backoff() {
    reject_case(Some("xxx")).await;
}

#[tokio::test]
async fn doc_reject_03() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.queue_set_max_attempts('foo', 1);
         SELECT fetchq.doc_push('foo', 'a1', 0, 1, now() - interval '1s', '{}');
         SELECT * FROM fetchq.doc_pick('foo', 0, 2, '5m');
         SELECT fetchq.doc_reject('foo', 'a1', 'foo', '{\"a\":1}', 'xxx');
         SELECT fetchq.mnt_run_all(100);
         SELECT fetchq.metric_log_pack();",
    )
    .await;
    assert_eq!(
        t.count("fetchq_data.foo__docs WHERE subject = 'a1' AND status = -1")
            .await,
        1
    );
}

async fn resolved(call: &str, status: i32, payload: Option<&str>) {
    let mut t = case().await;
    one_picked(&mut t, 1).await;
    t.run(call).await;
    t.run("SELECT fetchq.mnt_run_all(100); SELECT fetchq.metric_log_pack()")
        .await;
    let mut cond = format!("subject = 'a1' AND status = {status} AND iterations = 1");
    if status == 3 {
        cond.push_str(" AND next_iteration >= '2970-01-01'");
    }
    if let Some(p) = payload {
        cond.push_str(&format!(" AND payload = '{p}'"));
    }
    assert_eq!(
        t.count(&format!("fetchq_data.foo__docs WHERE {cond}"))
            .await,
        1
    );
}

#[tokio::test]
async fn doc_complete_01() {
    resolved("SELECT fetchq.doc_complete('foo', 'a1')", 3, Some("{}")).await;
}

#[tokio::test]
async fn doc_complete_02() {
    resolved(
        r#"SELECT fetchq.doc_complete('foo', 'a1', '{"a":22}')"#,
        3,
        Some(r#"{"a":22}"#),
    )
    .await;
}

#[tokio::test]
async fn doc_kill_01() {
    resolved("SELECT fetchq.doc_kill('foo', 'a1')", -1, Some("{}")).await;
}

#[tokio::test]
async fn doc_kill_02() {
    resolved(
        r#"SELECT fetchq.doc_kill('foo', 'a1', '{"a":22}')"#,
        -1,
        Some(r#"{"a":22}"#),
    )
    .await;
}

#[tokio::test]
async fn doc_drop_01() {
    let mut t = case().await;
    one_picked(&mut t, 1).await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.doc_drop('foo', 'a1')")
            .await,
        1
    );
    t.run("SELECT fetchq.mnt_run_all(100); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(
        t.count("fetchq_data.foo__docs WHERE subject = 'a1'").await,
        0
    );
}

// ------------------------------------------------------------ logs and metrics

#[tokio::test]
async fn log_error_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo')").await;
    assert_eq!(
        t.int(r#"SELECT queued_logs FROM fetchq.log_error('foo', 'a1', 'some error', '{"a":1}')"#)
            .await,
        1
    );
    assert_eq!(
        t.count("fetchq_data.foo__logs WHERE subject = 'a1' AND message = 'some error'")
            .await,
        1
    );
}

#[tokio::test]
async fn log_error_02() {
    let mut t = case().await;
    t.run(r#"SELECT fetchq.queue_create('foo'); SELECT fetchq.log_error('foo', 'a1', 'some error', '{"a":1}', 'ax22')"#)
        .await;
    assert_eq!(
        t.count("fetchq_data.foo__logs WHERE ref_id = 'ax22' AND subject = 'a1'")
            .await,
        1
    );
}

async fn snap_fixture(t: &mut Case) {
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 1, now() - interval '10s', '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 1, now() - interval '9s', '{}');
         SELECT fetchq.doc_push('foo', 'a3', 0, 1, now() - interval '8s', '{}');
         SELECT * FROM fetchq.doc_pick('foo', 0, 1, '5m');
         SELECT fetchq.mnt_run_all(100);
         SELECT fetchq.metric_log_pack();",
    )
    .await;
}

#[tokio::test]
async fn metric_snap_01() {
    let mut t = case().await;
    snap_fixture(&mut t).await;
    assert!(
        t.flag("SELECT success FROM fetchq.metric_snap('foo', 'cnt')")
            .await
    );
    assert_eq!(
        t.count("fetchq_data.foo__metrics WHERE metric = 'cnt' AND value = 3")
            .await,
        1
    );
}

#[tokio::test]
async fn metric_snap_02() {
    let mut t = case().await;
    snap_fixture(&mut t).await;
    assert_eq!(
        t.text("SELECT success || ' ' || inserts FROM fetchq.metric_snap('foo')")
            .await
            .as_deref(),
        Some("true 6")
    );
}

#[tokio::test]
async fn metric_snap_03() {
    let mut t = case().await;
    snap_fixture(&mut t).await;
    assert_eq!(
        t.text(r#"SELECT success || ' ' || inserts FROM fetchq.metric_snap('foo', '["cnt", "act"]'::jsonb)"#)
            .await
            .as_deref(),
        Some("true 2")
    );
}

/// Counter values are bigint here (v4: integer), a deliberate deviation the
/// other metric cases rely on silently; this one checks the type.
#[tokio::test]
async fn metric_log_pack_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.metric_log_set('foo', 'cnt', 10);
         SELECT fetchq.metric_log_increment('foo', 'cnt', 5);
         SELECT fetchq.metric_log_decrement('foo', 'cnt', 2);
         INSERT INTO fetchq.metrics_writes (created_at, queue, metric, increment, reset)
         VALUES (now() + interval '1 hour', 'foo', 'cnt', 1, NULL);
         SELECT fetchq.mnt_run_all(100);",
    )
    .await;
    // the write dated in the future waits
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.metric_log_pack()")
            .await,
        3
    );
    assert_eq!(t.metric("foo", "cnt").await, 13);
    assert_eq!(t.count("fetchq.metrics_writes").await, 1);
    // once due it is packed
    t.run("UPDATE fetchq.metrics_writes SET created_at = now() - interval '1s'")
        .await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.metric_log_pack()")
            .await,
        1
    );
    assert_eq!(t.metric("foo", "cnt").await, 14);
    assert_eq!(
        t.text("SELECT pg_typeof(current_value)::text FROM fetchq.metric_get('foo', 'cnt')")
            .await
            .as_deref(),
        Some("bigint")
    );
}

#[tokio::test]
async fn metric_log_pack_02() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.queue_create('faa');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() + interval '1m', '{}');
         SELECT fetchq.doc_push('faa', 'a1', 0, 0, now() + interval '1m', '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() - interval '1m', '{}');
         SELECT fetchq.doc_push('faa', 'a2', 0, 0, now() - interval '1m', '{}');
         SELECT fetchq.doc_push('faa', 'a3', 0, 0, now() - interval '2m', '{}');
         SELECT fetchq.mnt();",
    )
    .await;
    for (q, cnt, pln, pnd, ent) in [("foo", 2, 1, 1, 2), ("faa", 3, 1, 2, 3)] {
        assert_eq!(t.metric(q, "cnt").await, cnt, "{q} cnt");
        assert_eq!(t.metric(q, "pln").await, pln, "{q} pln");
        assert_eq!(t.metric(q, "pnd").await, pnd, "{q} pnd");
        assert_eq!(t.metric(q, "ent").await, ent, "{q} ent");
    }
    let subject = t
        .text("SELECT subject FROM fetchq.doc_pick('faa', 0, 1, '5m')")
        .await
        .unwrap();
    t.run(&format!(
        "SELECT fetchq.doc_complete('faa', '{subject}'); SELECT fetchq.mnt()"
    ))
    .await;
    assert_eq!(t.metric("faa", "pnd").await, 1);
    assert_eq!(t.metric("faa", "cpl").await, 1);
}

// ----------------------------------------------------------------- maintenance

#[tokio::test]
async fn mnt_make_pending_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() + interval '1 milliseconds', '{}');
         UPDATE fetchq_data.foo__docs SET next_iteration = now() - interval '1 milliseconds';
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() + interval '1 seconds', '{}');
         SELECT fetchq.doc_push('foo', 'a3', 0, 0, now() - interval '1 seconds', '{}');",
    )
    .await;
    assert_eq!(
        t.int("SELECT affected_rows FROM fetchq.mnt_make_pending('foo', 100)")
            .await,
        1
    );
    t.run("SELECT fetchq.metric_log_pack()").await;
    assert_eq!(t.metric("foo", "pnd").await, 2);
}

async fn expired_lease(t: &mut Case, max_attempts: Option<i32>, attempts: Option<i32>) {
    t.run("SELECT fetchq.queue_create('foo')").await;
    if let Some(n) = max_attempts {
        t.run(&format!("SELECT fetchq.queue_set_max_attempts('foo', {n})"))
            .await;
    }
    t.run(
        "SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() - interval '1 milliseconds', '{}');
         SELECT * FROM fetchq.doc_pick('foo', 0, 1, '5m');",
    )
    .await;
    let set_attempts = attempts
        .map(|n| format!("attempts = {n}, "))
        .unwrap_or_default();
    t.run(&format!(
        "UPDATE fetchq_data.foo__docs SET {set_attempts}next_iteration = now() - interval '1 milliseconds'"
    ))
    .await;
}

#[tokio::test]
async fn mnt_mark_dead_01() {
    let mut t = case().await;
    expired_lease(&mut t, None, Some(5)).await;
    t.run("SELECT fetchq.mnt_mark_dead('foo', 100); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(t.metric("foo", "kll").await, 1);
}

#[tokio::test]
async fn mnt_mark_dead_02() {
    let mut t = case().await;
    expired_lease(&mut t, Some(1), None).await;
    t.run("SELECT fetchq.mnt_mark_dead('foo', 100); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(t.metric("foo", "kll").await, 1);
}

#[tokio::test]
async fn mnt_reschedule_orphans_01() {
    let mut t = case().await;
    expired_lease(&mut t, None, None).await;
    t.run("SELECT fetchq.mnt_reschedule_orphans('foo', 100); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(t.metric("foo", "err").await, 1);
}

#[tokio::test]
async fn mnt_reschedule_orphans_02() {
    let mut t = case().await;
    expired_lease(&mut t, Some(1), None).await;
    t.run("SELECT fetchq.mnt_reschedule_orphans('foo', 100); SELECT fetchq.metric_log_pack()")
        .await;
    // out of attempts: mark_dead's business, not an orphan retry
    assert_eq!(t.metric("foo", "err").await, 0);
}

#[tokio::test]
async fn mnt_job_reschedule_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo'); UPDATE fetchq.jobs SET next_iteration = now() - interval '1s'")
        .await;
    let id = t.int("SELECT id FROM fetchq.mnt_job_pick('5m', 1)").await;
    assert!(
        t.flag(&format!(
            "SELECT success FROM fetchq.mnt_job_reschedule({id}, '1m')"
        ))
        .await
    );
    assert_eq!(
        t.count(&format!(
            "fetchq.jobs WHERE id = {id} AND attempts = 0 AND iterations = 1
             AND next_iteration = now() + interval '1m'"
        ))
        .await,
        1
    );
    assert!(
        !t.flag("SELECT success FROM fetchq.mnt_job_reschedule(-1, '1m')")
            .await
    );
}

#[tokio::test]
async fn mnt_job_run_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now() - interval '1s', '{}');
         UPDATE fetchq.jobs SET next_iteration = now() - interval '1s';",
    )
    .await;
    // one job by default, as in v4
    assert_eq!(
        t.text("SELECT success || ' ' || processed FROM fetchq.mnt_job_run()")
            .await
            .as_deref(),
        Some("true 1")
    );
    // v4's (limit) form
    assert_eq!(
        t.text("SELECT success || ' ' || processed FROM fetchq.mnt_job_run(2)")
            .await
            .as_deref(),
        Some("true 2")
    );
    assert_eq!(t.count("fetchq.jobs WHERE iterations = 1").await, 3);
}

/// Deviation: `processed` is 7 where v4 expected 8: two queues of 3 jobs (v4:
/// 4, see queue_create_01) plus the global counter-packing job, which v4's
/// `mnt` skipped. (v4 fails this case itself on its `packed` count.)
#[tokio::test]
async fn mnt_01_deviation_job_count() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.queue_create('faa');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now(), '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() + interval '1s', '{}');
         SELECT fetchq.doc_push('foo', 'a3', 0, 0, now() - interval '1s', '{}');
         UPDATE fetchq_data.foo__docs SET next_iteration = now() - interval '1 milliseconds', attempts = 4 WHERE subject = 'a1';
         UPDATE fetchq_data.foo__docs SET next_iteration = now() - interval '1 milliseconds' WHERE subject = 'a2';
         SELECT * FROM fetchq.doc_pick('foo', 0, 3, '5m');
         UPDATE fetchq_data.foo__docs SET next_iteration = now() - interval '1 milliseconds' WHERE subject IN ('a1', 'a2');",
    )
    .await;
    let processed = t.int("SELECT processed FROM fetchq.mnt()").await;
    assert_eq!(processed, 7);
    assert_eq!(t.metric("foo", "act").await, 1);
    assert_eq!(t.metric("foo", "kll").await, 1);
}

#[tokio::test]
async fn trace_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('q1'); SELECT fetchq.queue_create('q2'); SELECT fetchq.queue_create('q3');
         SELECT fetchq.queue_create('a1'); SELECT fetchq.queue_create('a2');
         SELECT fetchq.doc_push('q1', 'd1', 0, 0, now() - interval '1ms', '{\"a\":1}');
         SELECT * FROM fetchq.doc_pick('q1', 0, 1, '2s');
         SELECT fetchq.log_error('q1', 'd1', 'just a log', '{}');
         SELECT fetchq.doc_push('q2', 'd1', 0, 0, now() - interval '1ms', '{\"a\":1}');
         SELECT * FROM fetchq.doc_pick('q2', 0, 1, '2s');
         SELECT fetchq.doc_complete('q2', 'd1');
         SELECT fetchq.doc_push('q3', 'd1', 0, 0, now() - interval '1ms', '{\"a\":1}');
         SELECT * FROM fetchq.doc_pick('q3', 0, 1, '2s');
         SELECT fetchq.doc_reject('q3', 'd1', 'error message', '{\"a\":1}', 'refId');",
    )
    .await;
    let mut steps = t
        .column("SELECT queue || ' ' || type || ' ' || info FROM fetchq.trace('d1')")
        .await;
    steps.sort();
    assert_eq!(
        steps,
        [
            "q1 document active",
            "q1 error just a log",
            "q2 document completed",
            "q3 document planned",
            "q3 error error message"
        ]
    );
}

/// Deviation: v4 shipped SQL upgrade functions (`upgrade__320__330`);
/// versioned migrations replace them: running them again on a used database
/// changes nothing.
#[tokio::test]
async fn upgrade_320_330_deviation_migrations() {
    let db = TestDb::new().await;
    sqlx::raw_sql(
        "SELECT fetchq.queue_create('foo'); SELECT fetchq.queue_create('faa');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now(), '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() + interval '1s', '{}');
         SELECT fetchq.doc_push('foo', 'a3', 0, 0, now() - interval '1s', '{}');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    fetchq_core::migrate(&db.pool).await.unwrap();
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.foo__docs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(docs, 3);
    let schema: i32 = sqlx::query_scalar("SELECT schema_version FROM fetchq.info()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        i64::from(schema),
        i64::from(fetchq_core::latest_schema_version())
    );
}

// ------------------------------------- v4 cases its runner did not execute

/// `metric_get_total` (v4 read a table that no longer existed, so its own
/// case failed): the sum of a counter over every queue.
#[tokio::test]
async fn metric_get_total_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('a'); SELECT fetchq.queue_create('b');
         SELECT fetchq.doc_push('a', 'x'); SELECT fetchq.doc_push('b', 'x'); SELECT fetchq.doc_push('b', 'y');
         SELECT fetchq.metric_log_pack();",
    )
    .await;
    assert_eq!(
        t.text("SELECT current_value || ' ' || does_exists FROM fetchq.metric_get_total('cnt')")
            .await
            .as_deref(),
        Some("3 true")
    );
    assert_eq!(
        t.text("SELECT current_value || ' ' || does_exists FROM fetchq.metric_get_total('nope')")
            .await
            .as_deref(),
        Some("0 false")
    );
}

/// Deviation: a `metric_log_set` replaces the writes before it (v4 added every
/// increment of the batch to the set value, whatever their order: 104 here).
#[tokio::test]
async fn metric_get_01_deviation_set_replaces_earlier_writes() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.metric_set('a', 'b', 4); SELECT fetchq.metric_set('a', 'b', 5);
         SELECT fetchq.metric_increment('a', 'b', 5); SELECT fetchq.metric_increment('a', 'b', -3);
         SELECT fetchq.metric_log_increment('a', 'b', 10); SELECT fetchq.metric_log_decrement('a', 'b', 5);
         SELECT fetchq.metric_log_pack();",
    )
    .await;
    assert_eq!(t.metric("a", "b").await, 12);
    t.run(
        "SELECT fetchq.metric_log_increment('b', 'c', 10); SELECT fetchq.metric_log_decrement('b', 'c', 5);
         SELECT fetchq.metric_log_set('b', 'c', 99); SELECT fetchq.metric_log_pack();",
    )
    .await;
    assert_eq!(t.metric("b", "c").await, 99);
}

/// Five documents through every resolution: rescheduled, rejected, completed,
/// killed, dropped.
async fn five_resolutions(t: &mut Case, q: &str) {
    t.run(&format!("SELECT fetchq.queue_create('{q}')")).await;
    for (i, age) in (1..=5).zip([10, 9, 8, 7, 6]) {
        t.run(&format!(
            "SELECT fetchq.doc_push('{q}', 'a{i}', 0, 1, now() - interval '{age}s', '{{}}')"
        ))
        .await;
    }
    for call in [
        "fetchq.doc_reschedule('{q}', '{s}', now() + interval '1y')",
        "fetchq.doc_reject('{q}', '{s}', 'foo', '{\"a\":1}')",
        "fetchq.doc_complete('{q}', '{s}')",
        "fetchq.doc_kill('{q}', '{s}')",
        "fetchq.doc_drop('{q}', '{s}')",
    ] {
        let s = t
            .text(&format!(
                "SELECT subject FROM fetchq.doc_pick('{q}', 0, 1, '5m')"
            ))
            .await
            .unwrap();
        let call = call.replace("{q}", q).replace("{s}", &s);
        assert_eq!(
            t.int(&format!("SELECT affected_rows FROM {call}")).await,
            1,
            "{call}"
        );
    }
}

/// Deviation (documented, see doc_reject_01): the rejected document is planned
/// during its backoff, so pln is 2 and pnd 0 (v4: 1 and 1).
#[tokio::test]
async fn metric_compute_01_deviation_rejected_is_planned() {
    let mut t = case().await;
    five_resolutions(&mut t, "foo").await;
    t.run("SELECT fetchq.mnt_run_all(100); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(
        t.text(
            "SELECT concat_ws(' ', cnt, pln, pnd, act, kll, cpl) FROM fetchq.metric_compute('foo')"
        )
        .await
        .as_deref(),
        Some("4 2 0 0 1 1")
    );
}

#[tokio::test]
async fn metric_compute_all_01() {
    let mut t = case().await;
    five_resolutions(&mut t, "foo").await;
    five_resolutions(&mut t, "faa").await;
    t.run("SELECT fetchq.mnt_run_all(100); SELECT fetchq.metric_log_pack()")
        .await;
    assert_eq!(t.rows("SELECT * FROM fetchq.metric_compute_all()").await, 2);
}

#[tokio::test]
async fn metric_get_all_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 1, now() - interval '1s', '{}');
         SELECT * FROM fetchq.doc_pick('foo', 0, 2, '5m');
         SELECT fetchq.queue_create('faa');
         SELECT fetchq.doc_push('faa', 'a1', 0, 1, now() - interval '1s', '{}');
         SELECT * FROM fetchq.doc_pick('faa', 0, 2, '5m');
         SELECT fetchq.doc_reschedule('faa', 'a1', now() + interval '1y', '{\"a\":1}');
         SELECT fetchq.metric_log_pack();",
    )
    .await;
    assert_eq!(t.rows("SELECT * FROM fetchq.metric_get_all()").await, 2);
}

/// Deviation (documented: errors are raised): counters of a queue that does
/// not exist raise FQ002 (v4 read whatever was stored under the name). On a
/// queue, the v4 sum holds.
#[tokio::test]
async fn metric_get_common_01_deviation_needs_a_queue() {
    let mut t = case().await;
    let names = [
        "cnt", "pnd", "pln", "act", "cpl", "kll", "ent", "drp", "pkd", "prc", "res", "rej", "orp",
        "err",
    ];
    for (i, m) in (1..).zip(names) {
        t.run(&format!("SELECT fetchq.metric_set('a', '{m}', {i})"))
            .await;
    }
    assert_eq!(
        t.error("SELECT * FROM fetchq.metric_get_common('a')").await,
        "FQ002"
    );
    t.run("SELECT fetchq.queue_create('a')").await;
    for (i, m) in (1..).zip(names) {
        t.run(&format!("SELECT fetchq.metric_set('a', '{m}', {i})"))
            .await;
    }
    t.run("SELECT fetchq.metric_log_pack()").await;
    let sum = names.join(" + ");
    assert_eq!(
        t.int(&format!("SELECT {sum} FROM fetchq.metric_get_common('a')"))
            .await,
        105
    );
}

/// v4's case used table names of an older version; ported to the current ones.
#[tokio::test]
async fn mnt_job_pick_01() {
    let mut t = case().await;
    t.run("SELECT fetchq.queue_create('foo'); UPDATE fetchq.jobs SET next_iteration = now() - interval '1s'")
        .await;
    assert_eq!(
        t.rows("SELECT * FROM fetchq.mnt_job_pick('5m', 1)").await,
        1
    );
    assert_eq!(
        t.count("fetchq.jobs WHERE attempts = 1 AND next_iteration = now() + interval '5m'")
            .await,
        1
    );
}

/// v4's case used table names of an older version; ported to the current ones.
#[tokio::test]
async fn mnt_run_01() {
    let mut t = case().await;
    t.run(
        "SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a1', 0, 0, now(), '{}');
         SELECT fetchq.doc_push('foo', 'a2', 0, 0, now() + interval '1s', '{}');
         SELECT fetchq.doc_push('foo', 'a3', 0, 0, now() - interval '1s', '{}');
         UPDATE fetchq_data.foo__docs SET next_iteration = now() - interval '1 milliseconds', attempts = 4 WHERE subject = 'a1';
         UPDATE fetchq_data.foo__docs SET next_iteration = now() - interval '1 milliseconds' WHERE subject = 'a2';
         SELECT fetchq.mnt_run('foo', 100);
         SELECT * FROM fetchq.doc_pick('foo', 0, 3, '5m');
         UPDATE fetchq_data.foo__docs SET next_iteration = now() - interval '1 milliseconds' WHERE subject IN ('a1', 'a2');
         SELECT fetchq.mnt_run('foo', 100);
         SELECT fetchq.metric_log_pack();",
    )
    .await;
    assert_eq!(t.metric("foo", "act").await, 1);
    assert_eq!(t.metric("foo", "kll").await, 1);
}

#[tokio::test]
async fn mnt_run_all_01() {
    let mut t = case().await;
    for q in ["foo", "faa"] {
        t.run(&format!(
            "SELECT fetchq.queue_create('{q}');
             SELECT fetchq.doc_push('{q}', 'a1', 0, 0, now(), '{{}}');
             SELECT fetchq.doc_push('{q}', 'a2', 0, 0, now() + interval '1s', '{{}}');
             SELECT fetchq.doc_push('{q}', 'a3', 0, 0, now() - interval '1s', '{{}}');"
        ))
        .await;
    }
    assert_eq!(t.rows("SELECT * FROM fetchq.mnt_run_all(100)").await, 2);
    t.run("SELECT fetchq.metric_log_pack()").await;
    for q in ["foo", "faa"] {
        assert_eq!(t.metric(q, "pnd").await, 2);
        assert_eq!(t.metric(q, "pln").await, 1);
    }
}

/// `queue_truncate_all` while another transaction drops one of the queues: it
/// waits for the drop, then skips that queue instead of failing.
#[tokio::test]
async fn queue_truncate_all_skips_a_queue_dropped_meanwhile() {
    let db = TestDb::new().await;
    sqlx::raw_sql(
        "SELECT fetchq.queue_create('faa'); SELECT fetchq.queue_create('foo');
         SELECT fetchq.doc_push('foo', 'a'); SELECT fetchq.doc_push('faa', 'a');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut dropper = db.pool.begin().await.unwrap();
    sqlx::query("SELECT fetchq.queue_drop('faa')")
        .execute(&mut *dropper)
        .await
        .unwrap();
    let pool = db.pool.clone();
    let truncate = tokio::spawn(async move {
        sqlx::query_scalar::<_, bool>("SELECT success FROM fetchq.queue_truncate_all()")
            .fetch_one(&pool)
            .await
    });
    // wait until the truncate is blocked behind the drop
    let mut waiting = false;
    for _ in 0..600 {
        waiting = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                            AND wait_event_type = 'Lock' AND query LIKE '%queue_truncate_all%')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(waiting, "queue_truncate_all did not wait for the drop");
    dropper.commit().await.unwrap();
    assert!(truncate.await.unwrap().unwrap());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.foo__docs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
