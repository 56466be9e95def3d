//! Shared output helpers: JSON shapes of documents, simple aligned tables,
//! the refusal error (exit 2), and parsing of times and statuses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fetchq_core::{DocState, LogEntry, Schedule, Status, TraceStep};
use serde_json::{Value, json};

/// A refusal before anything changed (exit code 2).
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The name of a status, as the CLI prints and parses it.
pub(crate) fn status_name(status: Status) -> &'static str {
    match status {
        Status::Dead => "dead",
        Status::Planned => "planned",
        Status::Pending => "pending",
        Status::Active => "active",
        Status::Completed => "completed",
    }
}

/// A status by name (`dead`, `planned`, `pending`, `active`, `completed`) or code (-1 to 3).
pub(crate) fn parse_status(text: &str) -> Result<Status, String> {
    let lower = text.to_ascii_lowercase();
    for s in [
        Status::Dead,
        Status::Planned,
        Status::Pending,
        Status::Active,
        Status::Completed,
    ] {
        if status_name(s) == lower {
            return Ok(s);
        }
    }
    if lower == "killed" {
        return Ok(Status::Dead);
    }
    lower
        .parse::<i32>()
        .ok()
        .and_then(Status::from_code)
        .ok_or_else(|| {
            format!("unknown status {text:?}: use dead, planned, pending, active or completed (or -1..3)")
        })
}

/// A duration like `5m`, `2d`, `1h 30m` or `90s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("bad duration {text:?} ({e}): use e.g. 90s, 5m, 48h, 2d"))
}

/// WHEN: `now`, an RFC 3339 time (`2030-01-02T03:04:05Z`) or a delay from now (`5m`, `2d`).
pub(crate) fn parse_when(text: &str) -> Result<Schedule, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(Schedule::Now);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(Schedule::At(at.with_timezone(&Utc)));
    }
    humantime::parse_duration(t).map(Schedule::After).map_err(|_| {
        format!("bad time {text:?}: use now, an RFC 3339 time (2030-01-02T03:04:05Z) or a delay (5m, 2d)")
    })
}

/// A document as JSON.
pub(crate) fn doc_json(d: &DocState) -> Value {
    json!({
        "subject": d.subject,
        "status": status_name(d.status),
        "version": d.version,
        "priority": d.priority,
        "attempts": d.attempts,
        "iterations": d.iterations,
        "next_iteration": d.next_iteration.to_rfc3339(),
        "created_at": d.created_at.to_rfc3339(),
        "last_iteration": d.last_iteration.map(|t| t.to_rfc3339()),
        "payload": d.payload,
        "key": d.key,
    })
}

/// An error log entry as JSON.
pub(crate) fn log_json(e: &LogEntry) -> Value {
    json!({
        "id": e.id,
        "created_at": e.created_at.to_rfc3339(),
        "subject": e.subject,
        "message": e.message,
        "details": e.details,
        "ref_id": e.ref_id,
    })
}

/// A trace step as JSON.
pub(crate) fn trace_json(s: &TraceStep) -> Value {
    json!({
        "step": s.step,
        "created_at": s.created_at.to_rfc3339(),
        "queue": s.queue,
        "kind": s.kind,
        "info": s.info,
        "details": s.details,
    })
}

/// A time as the tables print it (UTC, seconds).
pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Replaces control characters (newlines, escapes) so one value stays on one
/// table line and cannot drive the terminal.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Prints rows as columns separated by two spaces, the first row a header.
pub(crate) fn table(rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(old) => *old = (*old).max(w),
                None => widths.push(w),
            }
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<pad$}  "));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// A value quoted for a POSIX shell (so a printed `--after` can be pasted).
pub(crate) fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Prints a JSON value on one line.
pub(crate) fn print_json(value: &Value) {
    println!("{value}");
}

/// `dump` and `restore` read or write in one long transaction with
/// statements of their own (a snapshot, COPY), and `reindex` sets session
/// timeouts for its rebuilds: refused through a transaction pooler, where
/// other clients' statements could meet them on the same server connection.
pub(crate) fn refuse_transaction_pooling(
    client: &fetchq_core::Client,
    what: &str,
) -> Result<(), Refused> {
    if client.is_transaction_pooling() {
        return Err(Refused(format!(
            "{what} need a direct or session-pooled connection: \
             drop --transaction-pooling (FETCHQ_TRANSACTION_POOLING) and give the database's own URL"
        )));
    }
    Ok(())
}
