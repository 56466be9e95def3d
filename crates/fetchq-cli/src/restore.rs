//! `fetchq restore`: a dump back into the database, all or nothing.

use fetchq_backup::{OnConflict, RestoreOptions, RestoreSummary};
use fetchq_core::Client;
use serde_json::json;

use crate::BoxError;

/// Arguments of `fetchq restore`.
#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// The dump file, or `-` for stdin (zstd, gzip or plain: detected).
    file: String,
    /// Restore the file's only queue under this name.
    #[arg(long, value_name = "NEW_NAME")]
    queue: Option<String>,
    /// When a queue exists: fail (default, nothing changes), skip (keep its
    /// settings and documents, add the missing ones) or replace (the file's
    /// settings and documents win, others stay).
    #[arg(long, default_value = "fail", value_parser = parse_conflict)]
    on_conflict: OnConflict,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_conflict(text: &str) -> Result<OnConflict, String> {
    text.parse()
}

/// Exit code of a failed restore: 2 refused (conflict, option, schema), 3 bad
/// file (truncated, corrupted, altered, other format), 1 anything else. The
/// database is unchanged in every case.
pub(crate) fn exit_code(e: &fetchq_backup::Error) -> u8 {
    use fetchq_backup::Error as E;
    match e {
        E::QueueExists(_)
        | E::ScheduleExists(_)
        | E::InvalidArgument(_)
        | E::SchemaTooNew { .. } => 2,
        E::NotADump(_)
        | E::UnsupportedVersion { .. }
        | E::Truncated(_)
        | E::ChecksumMismatch { .. }
        | E::Corrupt(_)
        | E::Read(_) => 3,
        _ => 1,
    }
}

fn summary_json(s: &RestoreSummary) -> serde_json::Value {
    json!({
        "created_at": s.header.created_at,
        "rows": s.rows,
        "queues": s.queues.iter().map(|q| json!({
            "source": q.source,
            "name": q.name,
            "created": q.created,
            "documents_in_file": q.docs_in_file,
            "documents_written": q.docs_written,
            "active_restored_as_due": q.active_restored_as_due,
            "logs": q.logs,
            "metrics": q.metrics,
            "schedules_in_file": q.schedules_in_file,
            "schedules_written": q.schedules_written,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) async fn run(client: &Client, args: RestoreArgs) -> Result<(), BoxError> {
    crate::output::refuse_transaction_pooling(client, "dump and restore")?;
    let opts = RestoreOptions {
        queue: args.queue,
        on_conflict: args.on_conflict,
    };
    let summary = if args.file == "-" {
        fetchq_backup::restore(client.pool(), &opts, std::io::stdin()).await?
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| format!("cannot open {}: {e}", args.file))?;
        fetchq_backup::restore(client.pool(), &opts, file).await?
    };
    if args.json {
        crate::output::print_json(&summary_json(&summary));
        return Ok(());
    }
    for q in &summary.queues {
        let from = if q.source == q.name {
            String::new()
        } else {
            format!(" (from {})", q.source)
        };
        println!(
            "{}{from}: {}, {} of {} documents written, {} log entries, {} metric snapshots",
            q.name,
            if q.created {
                "created"
            } else {
                "existing queue"
            },
            q.docs_written,
            q.docs_in_file,
            q.logs,
            q.metrics
        );
        if q.schedules_in_file > 0 {
            println!(
                "{}: {} of {} schedules written{}",
                q.name,
                q.schedules_written,
                q.schedules_in_file,
                if q.schedules_written < q.schedules_in_file {
                    " (the others exist and were kept)"
                } else {
                    ""
                }
            );
        }
        if q.active_restored_as_due > 0 {
            println!(
                "{}: {} documents were active in the dump: restored as pending, due now",
                q.name, q.active_restored_as_due
            );
        }
    }
    println!(
        "restored {} queue(s) from a dump of {}",
        summary.queues.len(),
        summary.header.created_at.to_rfc3339()
    );
    Ok(())
}
