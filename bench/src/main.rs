//! fetchq benchmarks. Each workload runs on a fresh database of a private
//! PostgreSQL started for the run (fsync and synchronous_commit on,
//! shared_buffers 256MB), next to a plain-SQL baseline measured in the same run,
//! and is reported as a ratio to it.
//!
//! ```not_rust
//! cargo run --release -p fetchq-bench -- all
//! cargo run --release -p fetchq-bench -- drain --docs 50000
//! ```

mod server;
mod workloads;

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "fetchq benchmarks against a plain-SQL baseline")]
struct Args {
    /// Which workload.
    #[arg(value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Documents for the drain workload.
    #[arg(long, default_value_t = 20_000)]
    docs: usize,
    /// Documents pushed for the idle-latency workload (at ~200/s).
    #[arg(long, default_value_t = 1_000)]
    latency_docs: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/fetchq-bench.json")]
    json: std::path::PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    All,
    Drain,
    Latency,
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let server = server::Server::start()?;
    eprintln!("PostgreSQL for benchmarks: {}", server.describe());
    let mut rows = Vec::new();
    if matches!(args.workload, Workload::All | Workload::Drain) {
        for concurrency in [8, 32] {
            rows.push(workloads::drain(&server, args.docs, concurrency).await?);
        }
    }
    if matches!(args.workload, Workload::All | Workload::Latency) {
        rows.extend(workloads::idle_latency(&server, args.latency_docs).await?);
    }
    println!(
        "\n| workload | fetchq | baseline | ratio | unit | note |\n|---|---:|---:|---:|---|---|"
    );
    let mut json = Vec::new();
    for r in &rows {
        let ratio = r.baseline.map(|b| r.fetchq / b);
        println!(
            "| {} | {:.1} | {} | {} | {} | {} |",
            r.workload,
            r.fetchq,
            r.baseline.map_or("-".into(), |b| format!("{b:.1}")),
            ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.unit,
            r.note
        );
        json.push(serde_json::json!({
            "workload": r.workload, "fetchq": r.fetchq, "baseline": r.baseline,
            "ratio": ratio, "unit": r.unit, "note": r.note,
        }));
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)?;
    eprintln!("results written to {}", args.json.display());
    server.stop();
    Ok(())
}
