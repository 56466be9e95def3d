//! `fetchq dump` / `fetchq restore` of one queue of N documents, next to
//! `pg_dump -Fc -t <docs table>` / `pg_restore` of the same table in the same
//! run: time, file size, and the peak RSS of the dumping process (measured
//! with `/usr/bin/time -f %M` for both).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fetchq_core::Client;

use super::BoxError;
use crate::Row;
use crate::server::Server;

/// The child process: dumps queue `bench` of `url` into `out` (zstd).
pub(crate) async fn dump_child(url: &str, out: &Path) -> Result<(), BoxError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await?;
    let file = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(out)?);
    let opts = fetchq_backup::DumpOptions::queues(["bench"]);
    let (file, _) = fetchq_backup::dump_into(&pool, &opts, file).await?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// libpq does not take sqlx's URL parameters.
fn libpq(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// Runs `cmd` under `/usr/bin/time`; returns (seconds, peak RSS in MB).
fn timed(program: &Path, args: &[&str], scratch: &Path) -> Result<(f64, f64), BoxError> {
    let report = scratch.join("time.txt");
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "-o"])
        .arg(&report)
        .arg(program)
        .args(args)
        .status()?;
    if !status.success() {
        return Err(format!("{} failed: {status}", program.display()).into());
    }
    let text = std::fs::read_to_string(&report)?;
    let mut it = text.split_whitespace();
    let secs: f64 = it.next().ok_or("no time")?.parse()?;
    let kb: f64 = it.next().ok_or("no rss")?.parse()?;
    Ok((secs, kb / 1024.0))
}

fn mb(path: &Path) -> Result<f64, BoxError> {
    Ok(std::fs::metadata(path)?.len() as f64 / 1e6)
}

pub(crate) async fn run(server: &Server, docs: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!("backup: dump and restore of {docs} documents next to pg_dump/pg_restore ...");
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("fetchq-bench-backup-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let (pool, url) = server.database("bench_backup", 4).await?;
    let client = Client::new(pool.clone());
    client.migrate().await?;
    client.queue_create("bench").await?;
    sqlx::query(
        "INSERT INTO fetchq_data.bench__docs (subject, version, priority, status, attempts, iterations, next_iteration, last_iteration, payload)
         SELECT 'bench-' || lpad(i::text, 9, '0'), i % 2, i % 3, (ARRAY[0, 1, 3, -1])[1 + i % 4], i % 3, i % 5,
                now() + (i % 100) * interval '1 minute', CASE WHEN i % 2 = 0 THEN now() END,
                jsonb_build_object('i', i, 'email', 'user' || i || '@example.com', 'tags', jsonb_build_array('a', 'b'))
         FROM generate_series(1, $1) AS i",
    )
    .bind(docs as i64)
    .execute(&pool)
    .await?;
    sqlx::query("SELECT * FROM fetchq.metric_reset('bench')")
        .execute(&pool)
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE fetchq_data.bench__docs")
        .execute(&pool)
        .await?;

    let bin = server.bin_dir();
    let pg_file = scratch.join("bench.pgdump");
    let (pg_secs, pg_rss) = timed(
        &bin.join("pg_dump"),
        &[
            "-Fc",
            "-t",
            "fetchq_data.bench__docs",
            "-f",
            pg_file.to_str().ok_or("path")?,
            "-d",
            &libpq(&url),
        ],
        &scratch,
    )?;
    let fq_file = scratch.join("bench.fqdump");
    let exe = std::env::current_exe()?;
    let (fq_secs, fq_rss) = timed(
        &exe,
        &[
            "dump-child",
            "--url",
            &url,
            "--out",
            fq_file.to_str().ok_or("path")?,
        ],
        &scratch,
    )?;
    let (pg_mb, fq_mb) = (mb(&pg_file)?, mb(&fq_file)?);

    let (pgr_pool, pgr_url) = server.database("bench_backup_pgr", 2).await?;
    sqlx::raw_sql("CREATE SCHEMA fetchq_data")
        .execute(&pgr_pool)
        .await?;
    let started = Instant::now();
    let status = Command::new(bin.join("pg_restore"))
        .args(["--exit-on-error", "-d", &libpq(&pgr_url)])
        .arg(&pg_file)
        .status()?;
    if !status.success() {
        return Err(format!("pg_restore failed: {status}").into());
    }
    let pgr_secs = started.elapsed().as_secs_f64();
    pgr_pool.close().await;

    let (fqr_pool, _) = server.database("bench_backup_fqr", 4).await?;
    Client::new(fqr_pool.clone()).migrate().await?;
    let started = Instant::now();
    let summary = fetchq_backup::restore(
        &fqr_pool,
        &fetchq_backup::RestoreOptions::default(),
        std::fs::File::open(&fq_file)?,
    )
    .await?;
    let fqr_secs = started.elapsed().as_secs_f64();
    if summary.queues[0].docs_written != docs as i64 {
        return Err("the restore wrote a different number of documents".into());
    }
    fqr_pool.close().await;
    pool.close().await;
    let _ = std::fs::remove_dir_all(&scratch);
    for name in ["bench_backup", "bench_backup_pgr", "bench_backup_fqr"] {
        server.drop_database(name).await?;
    }

    let n = docs;
    Ok(vec![
        Row {
            workload: format!("backup: dump {n} docs (zstd) vs pg_dump -Fc -t"),
            fetchq: fq_secs,
            baseline: Some(pg_secs),
            unit: "s",
            note: format!(
                "{:.0} vs {:.0} docs/s",
                n as f64 / fq_secs,
                n as f64 / pg_secs
            ),
        },
        Row {
            workload: format!("backup: file size of {n} docs"),
            fetchq: fq_mb,
            baseline: Some(pg_mb),
            unit: "MB",
            note: "fetchq dump (zstd, all fields) vs pg_dump -Fc of the docs table".into(),
        },
        Row {
            workload: format!("backup: peak RSS of the dump process, {n} docs"),
            fetchq: fq_rss,
            baseline: Some(pg_rss),
            unit: "MB",
            note: "/usr/bin/time %M; baseline: pg_dump".into(),
        },
        Row {
            workload: format!("backup: restore {n} docs vs pg_restore"),
            fetchq: fqr_secs,
            baseline: Some(pgr_secs),
            unit: "s",
            note: "one transaction, binary COPY, counters from the reader; pg_restore: table, data, 4 indexes"
                .into(),
        },
    ])
}
