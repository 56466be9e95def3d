//! A crawler-shaped queue of `--big-docs` documents (default 100M) against the
//! same queue at 10k, in one run: the reschedule loop's pick cost and
//! throughput, pick+complete, counter reads and console listings, the table's
//! and each index's size per document, what the loop's churn leaves behind
//! (growth, dead rows, autovacuum) and how long one VACUUM of the table takes.
//! Not part of `all` (the 100M load takes about half an hour and ~30 GB).
//!
//! Shape: subjects are URLs grouped by host (no global order), a working set
//! of `DUE` documents is due and cycles (pick 32, reschedule one second later,
//! four clients, and a maintenance task doing what the runtime's leader does),
//! every other document is planned over the next three days. At 10k the queue
//! is the working set alone.

use std::time::{Duration, Instant};

use fetchq_core::{Client, DocFilter, PickOptions, Schedule, Status};
use sqlx::{PgPool, Row as _};

use super::{BoxError, quantile, run_clients};
use crate::Row;
use crate::server::Server;

const SMALL: usize = 10_000;
/// The cycling working set at every size.
const DUE: i64 = SMALL as i64;
/// Rows per load statement (progress, and WAL recycled between them).
const CHUNK: i64 = 5_000_000;
const CLIENTS: usize = 4;
const CYCLES: usize = 1_000;
const READS: usize = 300;
const DOCS: &str = "fetchq_data.bench__docs";

/// What one size measured.
struct Measured {
    size: usize,
    load_s: f64,
    pick_p50: f64,
    pick_p99: f64,
    loop_rate: f64,
    cycle_p50: f64,
    /// pick(32) p50 in the loop's first and last fifth.
    pick_first: f64,
    pick_last: f64,
    cycle_after_vacuum: f64,
    read_p50: f64,
    list_p50: [f64; 3],
    /// (relation, bytes) of the table and each index after the load.
    sizes: Vec<(String, i64)>,
    total_before: i64,
    total_after: i64,
    dead_after: i64,
    autovacuums: i64,
    vacuum_s: f64,
}

/// Loads `size` documents with the table's indexes dropped, then builds them
/// again from their own definitions (a measurement set-up: the push path is
/// measured elsewhere).
async fn load(pool: &PgPool, size: usize) -> Result<(), BoxError> {
    let key: (String, String) = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = $1::regclass AND contype = 'p'",
    )
    .bind(DOCS)
    .fetch_one(pool)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index AS i
         JOIN pg_class AS c ON c.oid = i.indexrelid
         WHERE i.indrelid = $1::regclass AND NOT i.indisprimary",
    )
    .bind(DOCS)
    .fetch_all(pool)
    .await?;
    for (name, _) in &indexes {
        sqlx::raw_sql(&format!("DROP INDEX fetchq_data.\"{name}\""))
            .execute(pool)
            .await?;
    }
    sqlx::raw_sql(&format!("ALTER TABLE {DOCS} DROP CONSTRAINT \"{}\"", key.0))
        .execute(pool)
        .await?;
    let mut from = 1i64;
    while from <= size as i64 {
        let to = (from + CHUNK - 1).min(size as i64);
        sqlx::query(
            "INSERT INTO fetchq_data.bench__docs (subject, status, next_iteration, payload)
             SELECT format('https://h%s.example/p/%s', i % 10007, i),
                    CASE WHEN i <= $3 THEN 1 ELSE 0 END,
                    CASE WHEN i <= $3 THEN now() - interval '1 hour'
                         ELSE now() + interval '1 hour' + (i % 259200) * interval '1 second' END,
                    jsonb_build_object('depth', i % 7)
             FROM generate_series($1::bigint, $2::bigint) AS i",
        )
        .bind(from)
        .bind(to)
        .bind(DUE)
        .execute(pool)
        .await?;
        eprintln!("big: loaded {to} of {size}");
        from = to + 1;
    }
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql("SET maintenance_work_mem = '2GB'")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(&format!(
        "ALTER TABLE {DOCS} ADD CONSTRAINT \"{}\" {}",
        key.0, key.1
    ))
    .execute(&mut *conn)
    .await?;
    for (_, definition) in &indexes {
        sqlx::raw_sql(definition).execute(&mut *conn).await?;
    }
    eprintln!("big: indexes built");
    sqlx::raw_sql(&format!("VACUUM ANALYZE {DOCS}"))
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql("CHECKPOINT").execute(&mut *conn).await?;
    Ok(())
}

async fn sizes(pool: &PgPool) -> Result<Vec<(String, i64)>, BoxError> {
    Ok(sqlx::query_as(
        "SELECT 'table', pg_relation_size($1::regclass)
         UNION ALL
         SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_index AS i
         JOIN pg_class AS c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass",
    )
    .bind(DOCS)
    .fetch_all(pool)
    .await?)
}

async fn total(pool: &PgPool) -> Result<i64, BoxError> {
    Ok(
        sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
            .bind(DOCS)
            .fetch_one(pool)
            .await?,
    )
}

fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}

/// What the runtime's maintenance leader does until `deadline`: the
/// maintenance jobs every second (counters folded, promotions, orphans) and a
/// VACUUM of tables with many dead rows every five.
async fn leader(client: Client, deadline: Instant) -> Result<(), fetchq_core::Error> {
    let mut last_vacuum = Instant::now();
    while Instant::now() < deadline {
        client.mnt_job_run(Duration::from_secs(300), 100).await?;
        if last_vacuum.elapsed() >= Duration::from_secs(5) {
            client.vacuum_hot_tables().await?;
            last_vacuum = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The reschedule loop: `CLIENTS` loops of pick 32 + reschedule_many one
/// second later, for `seconds`, next to the leader's maintenance. Returns
/// ((seconds into the loop, latency in ms) of the picks that got 32
/// documents, docs/s).
async fn reschedule_loop(
    client: &Client,
    seconds: u64,
) -> Result<(Vec<(f64, f64)>, f64), BoxError> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let maintenance = tokio::spawn(leader(client.clone(), deadline));
    let results = run_clients(CLIENTS, |_| {
        let client = client.clone();
        async move {
            let pick = PickOptions::new().limit(32).lease(Duration::from_secs(60));
            let (mut picks, mut done) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let at = Instant::now();
                let docs = client.pick("bench", &pick).await?;
                if docs.len() == 32 {
                    let into = (at - start).as_secs_f64();
                    picks.push((into, at.elapsed().as_secs_f64() * 1000.0));
                }
                if docs.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                done += docs.len();
                let items: Vec<_> = docs
                    .into_iter()
                    .map(|d| (d.lease, Schedule::after(Duration::from_secs(1)), None))
                    .collect();
                client.reschedule_many("bench", &items).await?;
            }
            Ok::<_, fetchq_core::Error>((picks, done))
        }
    })
    .await?;
    let elapsed = start.elapsed().as_secs_f64();
    maintenance.await??;
    let (mut picks, mut done) = (Vec::new(), 0);
    for (p, d) in results {
        picks.extend(p);
        done += d;
    }
    Ok((picks, done as f64 / elapsed))
}

async fn timed<F, Fut, T>(times: usize, mut f: F) -> Result<f64, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = fetchq_core::Result<T>>,
{
    let mut samples = Vec::with_capacity(times);
    for _ in 0..times {
        let at = Instant::now();
        f().await?;
        samples.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(quantile(&sorted(samples), 0.5))
}

async fn measure(server: &Server, size: usize, seconds: u64) -> Result<Measured, BoxError> {
    eprintln!("big: loading {size} documents ...");
    let (pool, _) = server.database("bench_big", CLIENTS as u32 + 2).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    let started = Instant::now();
    load(&pool, size).await?;
    client.metric_reset("bench").await?;
    let load_s = started.elapsed().as_secs_f64();
    let sizes = sizes(&pool).await?;
    let total_before = total(&pool).await?;
    let autovacuum_count = "SELECT autovacuum_count + vacuum_count FROM pg_stat_user_tables
                            WHERE relid = 'fetchq_data.bench__docs'::regclass";
    let autovacuums_before: i64 = sqlx::query_scalar(autovacuum_count)
        .fetch_one(&pool)
        .await?;

    eprintln!("big: reschedule loop at {size} for {seconds} s ...");
    let (timed_picks, loop_rate) = reschedule_loop(&client, seconds).await?;
    let fifth = seconds as f64 / 5.0;
    let window = |keep: &dyn Fn(f64) -> bool| {
        let in_window = timed_picks.iter().filter(|(t, _)| keep(*t));
        quantile(&sorted(in_window.map(|(_, ms)| *ms).collect()), 0.5)
    };
    let pick_first = window(&|t| t < fifth);
    let pick_last = window(&|t| t >= seconds as f64 - fifth);
    let picks = sorted(timed_picks.iter().map(|(_, ms)| *ms).collect());
    let total_after = total(&pool).await?;
    // the statistics collector lags a little
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = sqlx::query(
        "SELECT n_dead_tup, autovacuum_count + vacuum_count FROM pg_stat_user_tables
         WHERE relid = 'fetchq_data.bench__docs'::regclass",
    )
    .fetch_one(&pool)
    .await?;
    let dead_after: i64 = stats.try_get(0)?;
    let autovacuums = stats.try_get::<i64, _>(1)? - autovacuums_before;

    eprintln!("big: picks, reads and listings at {size} ...");
    let pick = PickOptions::new().limit(1).lease(Duration::from_secs(60));
    let cycle_p50 = timed(CYCLES, || async {
        if let Some(doc) = client.pick("bench", &pick).await?.pop() {
            client.complete(&doc.lease, None).await?;
        }
        Ok(())
    })
    .await?;
    // the leader's next round: the last counter writes packed
    client.mnt().await?;
    let read_p50 = timed(READS, || client.metric_get_common("bench")).await?;
    let filters = [
        DocFilter::new(),
        DocFilter::new().status(Status::Pending),
        DocFilter::new().subject_prefix("https://h42.example/"),
    ];
    let mut list_p50 = [0.0; 3];
    for (slot, filter) in list_p50.iter_mut().zip(&filters) {
        *slot = timed(READS, || client.doc_list("bench", filter, None, 50)).await?;
    }

    eprintln!("big: VACUUM at {size} ...");
    let at = Instant::now();
    sqlx::raw_sql(&format!("VACUUM {DOCS}"))
        .execute(&pool)
        .await?;
    let vacuum_s = at.elapsed().as_secs_f64();
    let cycle_after_vacuum = timed(CYCLES, || async {
        if let Some(doc) = client.pick("bench", &pick).await?.pop() {
            client.complete(&doc.lease, None).await?;
        }
        Ok(())
    })
    .await?;
    pool.close().await;
    server.drop_database("bench_big").await?;
    Ok(Measured {
        size,
        load_s,
        pick_p50: quantile(&picks, 0.5),
        pick_p99: quantile(&picks, 0.99),
        loop_rate,
        cycle_p50,
        pick_first,
        pick_last,
        cycle_after_vacuum,
        read_p50,
        list_p50,
        sizes,
        total_before,
        total_after,
        dead_after,
        autovacuums,
        vacuum_s,
    })
}

fn row(workload: String, fetchq: f64, baseline: Option<f64>, unit: &'static str) -> Row {
    Row {
        workload,
        fetchq,
        baseline,
        unit,
        note: format!("baseline: the same at {SMALL} docs in the same run"),
    }
}

pub(crate) async fn run(server: &Server, size: usize, seconds: u64) -> Result<Vec<Row>, BoxError> {
    let small = measure(server, SMALL, seconds).await?;
    let big = measure(server, size, seconds).await?;
    let n = big.size;
    let mut rows = vec![
        row(
            format!("reschedule loop pick(32) p50 at {n} docs"),
            big.pick_p50,
            Some(small.pick_p50),
            "ms",
        ),
        row(
            format!("reschedule loop pick(32) p99 at {n} docs"),
            big.pick_p99,
            Some(small.pick_p99),
            "ms",
        ),
        row(
            format!(
                "reschedule loop, {CLIENTS} clients, at {n} docs (at most {DUE}/s: the working set every second)"
            ),
            big.loop_rate,
            Some(small.loop_rate),
            "docs/s",
        ),
        row(
            format!("pick+complete p50 at {n} docs"),
            big.cycle_p50,
            Some(small.cycle_p50),
            "ms",
        ),
        row(
            format!("pick+complete p50 at {n} docs, after a VACUUM"),
            big.cycle_after_vacuum,
            Some(small.cycle_after_vacuum),
            "ms",
        ),
        row(
            format!("metric_get_common p50 at {n} docs"),
            big.read_p50,
            Some(small.read_p50),
            "ms",
        ),
    ];
    let labels = ["no filter", "pending", "subject prefix"];
    for ((label, b), s) in labels.iter().zip(big.list_p50).zip(small.list_p50) {
        rows.push(row(
            format!("doc_list 50, {label}, p50 at {n} docs"),
            b,
            Some(s),
            "ms",
        ));
    }
    for (name, bytes) in &big.sizes {
        let per_doc = *bytes as f64 / n as f64;
        let small_per_doc = small
            .sizes
            .iter()
            .find(|(s, _)| s == name)
            .map(|(_, b)| *b as f64 / small.size as f64);
        rows.push(row(
            format!("{name}, bytes per document at {n} docs"),
            per_doc,
            small_per_doc,
            "B/doc",
        ));
    }
    for m in [&small, &big] {
        rows.push(Row {
            workload: format!("table + indexes during the loop at {} docs", m.size),
            fetchq: m.total_after as f64 / 1_048_576.0,
            baseline: Some(m.total_before as f64 / 1_048_576.0),
            unit: "MB",
            note: format!(
                "baseline: before the loop; {} dead rows after it, {} vacuums in it (auto or the leader's); pick(32) p50 {:.2} ms in its first fifth, {:.2} in its last",
                m.dead_after, m.autovacuums, m.pick_first, m.pick_last
            ),
        });
        rows.push(Row {
            workload: format!("one VACUUM of the table at {} docs", m.size),
            fetchq: m.vacuum_s,
            baseline: None,
            unit: "s",
            note: format!("after the loop; the load took {:.0} s", m.load_s),
        });
    }
    Ok(rows)
}
