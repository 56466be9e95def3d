//! `fetchq logs QUEUE` (the error log, optionally followed) and `fetchq trace SUBJECT`.

use std::time::Duration;

use clap::Args;
use fetchq_core::{Client, LogEntry};
use serde_json::json;

use crate::BoxError;
use crate::output::{clean, log_json, parse_duration, print_json, table, time, trace_json};

/// Largest page of `log_list`.
const PAGE: i32 = 1000;

/// `fetchq logs QUEUE ...`
#[derive(Args)]
pub(crate) struct LogsArgs {
    /// Queue name.
    queue: String,
    /// Only this subject's entries.
    #[arg(long)]
    subject: Option<String>,
    /// How many of the newest entries to print (1 to 100000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
    /// Only entries written within this long (e.g. 1h, 2d).
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// Keep printing new entries (polled every second) until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print JSON: one object per line when following, else one array.
    #[arg(long)]
    json: bool,
}

fn print_entries(entries: &[LogEntry], as_json: bool, header: bool) {
    if as_json {
        for e in entries {
            print_json(&log_json(e));
        }
        return;
    }
    let mut rows = Vec::new();
    if header {
        rows.push(
            ["ID", "TIME", "SUBJECT", "MESSAGE", "REF"]
                .map(String::from)
                .to_vec(),
        );
    }
    for e in entries {
        rows.push(vec![
            e.id.to_string(),
            time(&e.created_at),
            clean(&e.subject),
            clean(&e.message),
            clean(e.ref_id.as_deref().unwrap_or("-")),
        ]);
    }
    table(&rows);
}

/// The newest entries with an id above `above` (all when `None`), newest
/// first, at most `limit`, none older than `since`.
async fn newest(
    client: &Client,
    args: &LogsArgs,
    above: Option<i64>,
    limit: i64,
) -> Result<Vec<LogEntry>, BoxError> {
    let oldest = args
        .since
        .and_then(|s| chrono::Duration::from_std(s).ok())
        .map(|s| chrono::Utc::now() - s);
    let mut out: Vec<LogEntry> = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let want = i32::try_from((limit - out.len() as i64).clamp(1, PAGE.into())).unwrap_or(PAGE);
        let page = client
            .log_list(&args.queue, args.subject.as_deref(), before, want)
            .await?;
        let full = page.len() == want as usize;
        for e in page {
            if above.is_some_and(|a| e.id <= a) || oldest.is_some_and(|o| e.created_at < o) {
                return Ok(out);
            }
            before = Some(e.id);
            out.push(e);
            if out.len() as i64 >= limit {
                return Ok(out);
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

/// `fetchq logs`.
pub(crate) async fn run_logs(client: &Client, args: LogsArgs) -> Result<(), BoxError> {
    let mut entries = newest(client, &args, None, args.limit).await?;
    entries.reverse(); // oldest first, like a log file
    let mut last = entries.last().map(|e| e.id);
    if !args.follow {
        if args.json {
            print_json(&json!(entries.iter().map(log_json).collect::<Vec<_>>()));
        } else if entries.is_empty() {
            println!("no log entries");
        } else {
            print_entries(&entries, false, true);
        }
        return Ok(());
    }
    print_entries(&entries, args.json, !args.json);
    if last.is_none() {
        // an empty log: start from whatever comes next, not from id 0 of a
        // log whose older rows the retention just dropped
        last = Some(0);
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let mut fresh = newest(client, &args, last, 100_000).await?;
        if fresh.is_empty() {
            continue;
        }
        fresh.reverse();
        last = fresh.last().map(|e| e.id).or(last);
        print_entries(&fresh, args.json, false);
    }
}

/// `fetchq trace SUBJECT`.
pub(crate) async fn run_trace(
    client: &Client,
    subject: &str,
    as_json: bool,
) -> Result<(), BoxError> {
    let steps = client.trace(subject).await?;
    if as_json {
        print_json(&json!(steps.iter().map(trace_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if steps.is_empty() {
        println!("{}: not found in any queue", clean(subject));
        return Ok(());
    }
    let mut rows = vec![
        ["STEP", "TIME", "QUEUE", "KIND", "INFO"]
            .map(String::from)
            .to_vec(),
    ];
    for s in &steps {
        rows.push(vec![
            s.step.to_string(),
            time(&s.created_at),
            s.queue.clone(),
            s.kind.clone(),
            clean(&s.info),
        ]);
    }
    table(&rows);
    Ok(())
}
