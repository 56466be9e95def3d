//! `fetchq dump`: queues to one compressed, checksummed file (or stdout).

use std::io::Write;
use std::path::PathBuf;

use fetchq_backup::{Compression, DumpOptions, DumpSummary};
use fetchq_core::Client;
use serde_json::json;

use crate::BoxError;
use crate::output::Refused;

/// Arguments of `fetchq dump`.
#[derive(clap::Args)]
pub(crate) struct DumpArgs {
    /// Queues to dump (one consistent snapshot of all of them).
    queues: Vec<String>,
    /// Dump every queue.
    #[arg(long, conflicts_with = "queues")]
    all: bool,
    /// Output file, or `-` for stdout (then nothing else goes to stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: String,
    /// Compression: zstd (default), gzip or none.
    #[arg(long, default_value = "zstd", value_parser = parse_compression)]
    compress: Compression,
    /// Optional sections, comma separated: logs, metrics.
    #[arg(long, value_delimiter = ',', value_parser = ["logs", "metrics"])]
    include: Vec<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_compression(text: &str) -> Result<Compression, String> {
    text.parse()
}

fn summary_json(s: &DumpSummary, output: &str, bytes: Option<u64>) -> serde_json::Value {
    json!({
        "output": output,
        "bytes": bytes,
        "bytes_uncompressed": s.bytes_uncompressed,
        "rows": s.rows,
        "created_at": s.header.created_at,
        "schema_version": s.header.schema_version,
        "queues": s.header.queues.iter().map(|q| json!({
            "name": q.name,
            "documents": q.counts.cnt,
            "counts": q.counts,
            "active_restored_as_due": q.active_restored_as_due,
            "logs": q.logs,
            "metrics": q.metrics,
            "schedules": q.schedules.iter().map(|s| &s.name).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn summary_text(s: &DumpSummary, output: &str, bytes: Option<u64>) -> String {
    let mut text = String::new();
    for q in &s.header.queues {
        text.push_str(&format!(
            "{}: {} documents ({} planned, {} pending, {} active, {} completed, {} dead)",
            q.name,
            q.counts.cnt,
            q.counts.pln,
            q.counts.pnd,
            q.counts.act,
            q.counts.cpl,
            q.counts.kll
        ));
        if let Some(n) = q.logs {
            text.push_str(&format!(", {n} log entries"));
        }
        if let Some(n) = q.metrics {
            text.push_str(&format!(", {n} metric snapshots"));
        }
        if !q.schedules.is_empty() {
            text.push_str(&format!(", {} schedules", q.schedules.len()));
        }
        if q.active_restored_as_due > 0 {
            text.push_str(&format!(
                "; {} active documents will be restored as due",
                q.active_restored_as_due
            ));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "dumped {} queue(s) to {output}{}",
        s.header.queues.len(),
        bytes.map(|b| format!(" ({b} bytes)")).unwrap_or_default()
    ));
    text
}

pub(crate) async fn run(client: &Client, args: DumpArgs) -> Result<(), BoxError> {
    crate::output::refuse_transaction_pooling(client, "dump and restore")?;
    if args.queues.is_empty() && !args.all {
        return Err(Refused("name the queues to dump, or use --all".into()).into());
    }
    let opts = DumpOptions {
        queues: args.queues.clone(),
        all: args.all,
        compression: args.compress,
        include_logs: args.include.iter().any(|i| i == "logs"),
        include_metrics: args.include.iter().any(|i| i == "metrics"),
    };
    if args.output == "-" {
        let out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout());
        let (_, summary) = fetchq_backup::dump_into(client.pool(), &opts, out).await?;
        // stdout carries the dump: the summary goes to stderr
        if args.json {
            eprintln!("{}", summary_json(&summary, "-", None));
        } else {
            eprintln!("{}", summary_text(&summary, "stdout", None));
        }
        return Ok(());
    }
    // write next to the target and rename at the end: a failed dump never
    // leaves a file under the requested name
    let path = PathBuf::from(&args.output);
    let mut partial = path.clone().into_os_string();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let result = fetchq_backup::dump_into(client.pool(), &opts, out).await;
    let (out, summary) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let finish = (|| -> std::io::Result<u64> {
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.flush()?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        std::fs::rename(&partial, &path)?;
        Ok(bytes)
    })();
    let bytes = match finish {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(format!("cannot write {}: {e}", path.display()).into());
        }
    };
    if args.json {
        crate::output::print_json(&summary_json(&summary, &args.output, Some(bytes)));
    } else {
        println!("{}", summary_text(&summary, &args.output, Some(bytes)));
    }
    Ok(())
}
