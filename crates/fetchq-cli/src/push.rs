//! `fetchq push`: one document (payload inline, from a file or stdin), or
//! `--jsonl` documents from stdin in batches of 1,000.

use std::io::{BufRead, Read};
use std::path::PathBuf;

use clap::Args;
use fetchq_core::{Client, NewDoc, Schedule};
use serde_json::Value;

use crate::BoxError;
use crate::output::{Refused, clean, parse_duration};

/// Documents per `push_many` call of `--jsonl`.
const BATCH: usize = 1000;
/// Longest line `--jsonl` reads (a payload is capped by the queue anyway).
const MAX_LINE: u64 = 64 * 1024 * 1024;

/// `fetchq push QUEUE [SUBJECT] ...`
#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct PushArgs {
    /// Queue name.
    queue: String,
    /// Unique subject (not with --jsonl).
    #[arg(required_unless_present = "jsonl", conflicts_with = "jsonl")]
    subject: Option<String>,
    /// JSON payload, or `-` to read it from stdin.
    #[arg(long, allow_hyphen_values = true, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the JSON payload from this file.
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// Document version.
    #[arg(long, default_value_t = 0)]
    version: i32,
    /// Priority (higher first).
    #[arg(long, default_value_t = 0)]
    priority: i32,
    /// Concurrency key, e.g. the host (see `queue set --key-concurrency`).
    #[arg(long)]
    key: Option<String>,
    /// Read documents from stdin, one JSON object a line:
    /// {"subject", "payload", "version", "priority", "delay", "key"} (delay: seconds or "5m").
    #[arg(long, conflicts_with_all = ["payload", "payload_file", "version", "priority", "key"])]
    jsonl: bool,
}

/// `fetchq push`.
pub(crate) async fn run(client: &Client, a: PushArgs) -> Result<(), BoxError> {
    if a.jsonl {
        return jsonl(client, &a.queue).await;
    }
    let subject = a.subject.unwrap_or_default();
    let text = match (&a.payload, &a.payload_file) {
        (Some(p), _) if p == "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| format!("cannot read stdin: {e}"))?,
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| Refused(format!("cannot read {}: {e}", f.display())))?,
        (None, None) => "{}".to_owned(),
    };
    let payload: Value =
        serde_json::from_str(&text).map_err(|e| format!("the payload is not valid JSON: {e}"))?;
    let mut doc = NewDoc::new(subject.as_str())
        .payload(payload)
        .version(a.version)
        .priority(a.priority);
    if let Some(key) = a.key {
        doc = doc.key(key);
    }
    let added = client.push(&a.queue, &doc).await?;
    println!(
        "{}: {}",
        clean(&subject),
        if added {
            "queued"
        } else {
            "duplicate, ignored"
        }
    );
    Ok(())
}

/// One `--jsonl` line as a document.
fn parse_line(line: &str) -> Result<NewDoc, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "subject" | "payload" | "version" | "priority" | "delay" | "key"
        ) {
            return Err(format!(
                "unknown field {key:?} (fields: subject, payload, version, priority, delay, key)"
            ));
        }
    }
    let subject = obj
        .get("subject")
        .and_then(Value::as_str)
        .ok_or("\"subject\" is missing or not a string")?;
    if subject.is_empty() || subject.chars().count() > 255 || subject.contains('\0') {
        return Err("\"subject\" must be 1 to 255 characters, without NUL".into());
    }
    let int = |key: &str| -> Result<i32, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or(format!("{key:?} must be a 32-bit integer")),
        }
    };
    let mut doc = NewDoc::new(subject)
        .version(int("version")?)
        .priority(int("priority")?)
        .payload(
            obj.get("payload")
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
        );
    match obj.get("key") {
        None | Some(Value::Null) => {}
        Some(Value::String(k))
            if !k.is_empty() && k.chars().count() <= 255 && !k.contains('\0') =>
        {
            doc = doc.key(k.clone());
        }
        Some(_) => {
            return Err("\"key\" must be a string of 1 to 255 characters, without NUL".into());
        }
    }
    match obj.get("delay") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => doc = doc.at(Schedule::After(parse_duration(s)?)),
        Some(v) => {
            let secs = v
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or("\"delay\" must be seconds (>= 0) or a duration like \"5m\"")?;
            let d = std::time::Duration::try_from_secs_f64(secs)
                .map_err(|e| format!("bad \"delay\": {e}"))?;
            doc = doc.at(Schedule::After(d));
        }
    }
    Ok(doc)
}

/// Pushes one document per stdin line, in batches; a bad line stops with an
/// error naming it, after pushing every line before it.
async fn jsonl(client: &Client, queue: &str) -> Result<(), BoxError> {
    // an unknown queue fails before reading anything
    client.queue_status(queue).await?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut batch: Vec<NewDoc> = Vec::with_capacity(BATCH);
    let (mut lines_done, mut added) = (0u64, 0u64);
    let mut line_no = 0u64;
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE)
            .read_line(&mut buf)
            .map_err(|e| format!("line {}: cannot read stdin: {e}", line_no + 1))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        // a line that cannot be pushed: push the lines before it, then stop
        let refusal = if !buf.ends_with('\n') && n as u64 == MAX_LINE {
            Some(format!("longer than {MAX_LINE} bytes;"))
        } else {
            let line = buf.trim();
            if line.is_empty() {
                continue;
            }
            match parse_line(line) {
                Ok(doc) => {
                    batch.push(doc);
                    None
                }
                Err(e) => Some(format!("{e}; the")),
            }
        };
        if let Some(reason) = refusal {
            let pushed = flush(
                client,
                queue,
                &mut batch,
                line_no - 1,
                &mut lines_done,
                &mut added,
            )
            .await?;
            return Err(format!(
                "line {line_no}: {reason} {pushed} lines before it were pushed ({added} new documents)"
            )
            .into());
        }
        if batch.len() >= BATCH {
            flush(
                client,
                queue,
                &mut batch,
                line_no,
                &mut lines_done,
                &mut added,
            )
            .await?;
        }
    }
    flush(
        client,
        queue,
        &mut batch,
        line_no,
        &mut lines_done,
        &mut added,
    )
    .await?;
    println!("pushed {added} new documents from {line_no} lines into {queue} (duplicates ignored)");
    Ok(())
}

/// Sends the batch (the documents of the lines up to `upto`); returns how
/// many lines are done in all.
async fn flush(
    client: &Client,
    queue: &str,
    batch: &mut Vec<NewDoc>,
    upto: u64,
    lines_done: &mut u64,
    added: &mut u64,
) -> Result<u64, BoxError> {
    if !batch.is_empty() {
        let n = client.push_many(queue, batch).await.map_err(|e| {
            format!(
                "lines {} to {}: {e}; the {lines_done} lines before them were pushed ({added} new documents)",
                *lines_done + 1,
                upto
            )
        })?;
        *added += n;
        batch.clear();
    }
    *lines_done = upto;
    Ok(*lines_done)
}
