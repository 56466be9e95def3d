//! fetchq benchmarks. Each workload runs on a fresh database of a private
//! PostgreSQL started for the run (fsync and synchronous_commit on,
//! shared_buffers 256MB), next to a plain-SQL baseline measured in the same run,
//! and is reported as a ratio to it.
//!
//! ```not_rust
//! cargo run --release -p fetchq-bench -- all
//! cargo run --release -p fetchq-bench -- drain --docs 50000
//! cargo run --release -p fetchq-bench -- pgbouncer --docs 20000
//! ```

mod server;
mod workloads;

use clap::{Parser, ValueEnum};

use workloads::BoxError;

#[derive(Parser)]
#[command(about = "fetchq benchmarks against plain-SQL baselines measured in the same run")]
struct Args {
    /// Which workload (`child` is internal: the footprint's worker process).
    #[arg(value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Documents per push and drain workload.
    #[arg(long, default_value_t = 20_000)]
    docs: usize,
    /// Documents pushed for the idle-latency workload (at ~200/s).
    #[arg(long, default_value_t = 1_000)]
    latency_docs: usize,
    /// Seconds of the reschedule loop.
    #[arg(long, default_value_t = 60)]
    reschedule_seconds: u64,
    /// Queue sizes of the scale workload.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 1_000_000, 10_000_000])]
    scale: Vec<usize>,
    /// Documents in the big queue of the console workload.
    #[arg(long, default_value_t = 10_000_000)]
    console_docs: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/fetchq-bench.json")]
    json: std::path::PathBuf,
    #[arg(long, hide = true)]
    url: Option<String>,
    #[arg(long, hide = true)]
    bare: bool,
    /// Documents of the backup workload (dump/restore vs pg_dump/pg_restore).
    #[arg(long, default_value_t = 1_000_000)]
    backup_docs: usize,
    /// The soak's CSV samples (default target/fetchq-soak.csv).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Minutes of the soak.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Documents pushed per second by the soak, over its three queues.
    #[arg(long, default_value_t = 200)]
    rate: usize,
    /// Seconds between the soak's samples.
    #[arg(long, default_value_t = 30)]
    sample_seconds: u64,
    /// Minutes between the soak's worker restarts.
    #[arg(long, default_value_t = 3)]
    restart_minutes: u64,
    /// Soak subjects in no order instead of increasing.
    #[arg(long)]
    hashed_subjects: bool,
    /// Documents in the big queue of the `big` workload.
    #[arg(long, default_value_t = 100_000_000)]
    big_docs: usize,
    /// Seconds of the `big` workload's reschedule loop at each size.
    #[arg(long, default_value_t = 120)]
    big_seconds: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    All,
    Push,
    Drain,
    Reschedule,
    Latency,
    Scale,
    Footprint,
    /// The REST API against the Rust client.
    Http,
    /// The web console's pages on a big queue against a small one.
    Console,
    /// Dump and restore against pg_dump and pg_restore.
    Backup,
    /// The drain with the worker's process metrics on against off.
    WorkerMetrics,
    /// Rate limits: the unlimited pick's cost, a limited queue's rate held.
    RateLimit,
    /// Push and drain through PgBouncer (transaction and session pooling)
    /// against direct (needs pgbouncer installed; not part of `all`).
    Pgbouncer,
    /// A mixed load held for `--minutes` (not part of `all`): worker RSS,
    /// table sizes, dead tuples and p99s, first window against last.
    Soak,
    #[value(hide = true)]
    SoakWorker,
    /// Two databases of one cluster drained by one process with two
    /// runtimes, against one database with both queue sets (not part of `all`).
    TwoDatabases,
    /// A crawler-shaped queue of `--big-docs` documents (default 100M)
    /// against 10k: the reschedule loop, picks, reads, sizes per document,
    /// churn and VACUUM time (not part of `all`).
    Big,
    #[value(hide = true)]
    Child,
    #[value(hide = true)]
    DumpChild,
}

/// One result line.
pub(crate) struct Row {
    pub(crate) workload: String,
    pub(crate) fetchq: f64,
    pub(crate) baseline: Option<f64>,
    pub(crate) unit: &'static str,
    pub(crate) note: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.workload == Workload::Child {
        let url = args.url.as_deref().ok_or("child needs --url")?;
        return workloads::footprint::child(url, args.bare).await;
    }
    if args.workload == Workload::DumpChild {
        let url = args.url.as_deref().ok_or("dump-child needs --url")?;
        let out = args.out.as_deref().ok_or("dump-child needs --out")?;
        return workloads::backup::dump_child(url, out).await;
    }
    if args.workload == Workload::SoakWorker {
        let url = args.url.as_deref().ok_or("soak-worker needs --url")?;
        return workloads::soak::worker(url).await;
    }
    let server = server::Server::start()?;
    eprintln!("PostgreSQL for benchmarks: {}", server.describe());
    let all = args.workload == Workload::All;
    let mut rows = Vec::new();
    if all || args.workload == Workload::Push {
        rows.extend(workloads::push::single(&server, args.docs.min(16_000)).await?);
        rows.push(workloads::push::bulk(&server, args.docs * 5, false).await?);
        rows.push(workloads::push::bulk(&server, args.docs * 5, true).await?);
    }
    if all || args.workload == Workload::Drain {
        for concurrency in [8, 32] {
            rows.push(workloads::drain::drain(&server, args.docs, concurrency).await?);
        }
        rows.extend(workloads::drain::ceiling(&server, args.docs).await?);
    }
    if all || args.workload == Workload::Reschedule {
        rows.extend(workloads::reschedule::run(&server, 10_000, args.reschedule_seconds).await?);
    }
    if all || args.workload == Workload::Latency {
        rows.extend(workloads::latency::idle_latency(&server, args.latency_docs).await?);
    }
    if all || args.workload == Workload::Scale {
        rows.extend(workloads::scale::run(&server, &args.scale).await?);
    }
    if all || args.workload == Workload::Footprint {
        rows.extend(workloads::footprint::run(&server, args.docs).await?);
    }
    if all || args.workload == Workload::WorkerMetrics {
        rows.extend(workloads::worker_metrics::run(&server, args.docs).await?);
    }
    if all || args.workload == Workload::RateLimit {
        rows.extend(workloads::rate_limit::run(&server).await?);
    }
    if args.workload == Workload::Pgbouncer {
        rows.extend(workloads::pgbouncer::run(&server, args.docs).await?);
    }
    if all || args.workload == Workload::Http {
        rows.push(workloads::http::push(&server, args.docs * 5).await?);
        rows.push(workloads::http::work(&server, args.docs).await?);
    }
    if all || args.workload == Workload::Console {
        rows.extend(workloads::console::run(&server, args.console_docs).await?);
    }
    if all || args.workload == Workload::Backup {
        rows.extend(workloads::backup::run(&server, args.backup_docs).await?);
    }
    if args.workload == Workload::Soak {
        let opts = workloads::soak::Options {
            minutes: args.minutes,
            rate: args.rate,
            sample_seconds: args.sample_seconds,
            restart_minutes: args.restart_minutes,
            out: args
                .out
                .clone()
                .unwrap_or_else(|| "target/fetchq-soak.csv".into()),
            hashed_subjects: args.hashed_subjects,
        };
        rows.extend(workloads::soak::run(&server, &opts).await?);
    }
    if args.workload == Workload::TwoDatabases {
        rows.extend(workloads::two_databases::run(&server, args.docs, 2).await?);
    }
    if args.workload == Workload::Big {
        rows.extend(workloads::big::run(&server, args.big_docs, args.big_seconds).await?);
    }
    print_table(&rows);
    write_json(&args.json, &rows)?;
    server.stop();
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "\n| workload | fetchq | baseline | ratio | unit | note |\n|---|---:|---:|---:|---|---|"
    );
    for r in rows {
        println!(
            "| {} | {:.2} | {} | {} | {} | {} |",
            r.workload,
            r.fetchq,
            r.baseline.map_or("-".into(), |b| format!("{b:.2}")),
            r.baseline
                .map_or("-".into(), |b| format!("{:.2}", r.fetchq / b)),
            r.unit,
            r.note
        );
    }
}

fn write_json(path: &std::path::Path, rows: &[Row]) -> Result<(), BoxError> {
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.workload, "fetchq": r.fetchq, "baseline": r.baseline,
                "ratio": r.baseline.map(|b| r.fetchq / b), "unit": r.unit, "note": r.note,
            })
        })
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    eprintln!("results written to {}", path.display());
    Ok(())
}
