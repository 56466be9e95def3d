//! The dump file format, version 2: JSON lines, compressed as a whole.
//!
//! ```text
//! {"format":"fetchq-dump","format_version":2,...}           header (one line)
//! {"section":"docs","queue":"mails","rows":2}               a section marker
//! ["a@x",0,0,1,0,0,"2026-...","2026-...",null,null,{},"k1"] one document per line
//! ["b@x",...,null]
//! {"section":"logs","queue":"mails","rows":0}               (with --include logs)
//! {"end":"fetchq-dump","rows":2,"sha256":"..."}             trailer (last line)
//! ```
//!
//! The trailer's `sha256` covers every byte of the uncompressed stream before
//! the trailer line. Data lines are JSON arrays in the column order the header
//! lists (`doc_columns`, `log_columns`, `metric_columns`).
//!
//! Version 2 (schema 17 and 18) adds, to version 1:
//!
//! * a 12th, last document column, `key`: the document's concurrency key, a
//!   string of 1 to 255 characters or `null`. A dump of a database whose
//!   documents have no key column (schema 16 or older) writes `null`.
//! * `schedules` in each queue's header entry: the cron schedules whose
//!   target is that queue ([`ScheduleEntry`]: name, cron, time zone and the
//!   document they fire; not their next tick or tick counters, which are the
//!   old database's state). Empty for a database without schedules (schema
//!   17 or older). They are in the header so a restore checks them (and
//!   their name conflicts) before it writes anything.
//!
//! A restore reads version 1 files too: their documents have 11 columns and
//! come back without a key, and they hold no schedules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The `format` field of every dump header.
pub const FORMAT_NAME: &str = "fetchq-dump";

/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads.
pub const MIN_FORMAT_VERSION: u32 = 1;

/// The longest document key, in characters (the `key varchar(255)` column).
pub const MAX_KEY_CHARS: usize = 255;

/// Columns of a document line, in order (version 2; version 1 has all but the
/// last, `key`).
pub const DOC_COLUMNS: [&str; 12] = [
    "subject",
    "version",
    "priority",
    "status",
    "attempts",
    "iterations",
    "next_iteration",
    "created_at",
    "last_iteration",
    "lease_token",
    "payload",
    "key",
];

/// How many columns a document line of format `version` has (`None`: a
/// version this build does not read).
///
/// ```
/// assert_eq!(fetchq_backup::format::doc_columns_of(1), Some(11));
/// assert_eq!(fetchq_backup::format::doc_columns_of(2), Some(12));
/// assert_eq!(fetchq_backup::format::doc_columns_of(3), None);
/// ```
pub fn doc_columns_of(version: u32) -> Option<usize> {
    match version {
        1 => Some(DOC_COLUMNS.len() - 1),
        2 => Some(DOC_COLUMNS.len()),
        _ => None,
    }
}

/// Columns of an error log line, in order.
pub const LOG_COLUMNS: [&str; 6] = [
    "id",
    "created_at",
    "subject",
    "message",
    "details",
    "ref_id",
];

/// Columns of a metric snapshot line, in order.
pub const METRIC_COLUMNS: [&str; 4] = ["id", "created_at", "metric", "value"];

/// The first line of a dump: what it holds and where it comes from.
///
/// ```
/// let line = r#"{"format":"fetchq-dump","format_version":1,"engine_version":"5.13.0",
///   "schema_version":13,"created_at":"2026-01-01T00:00:00Z","tool":"t","includes":[],
///   "doc_columns":[],"log_columns":[],"metric_columns":[],"queues":[]}"#;
/// let header: fetchq_backup::Header = serde_json::from_str(line).unwrap();
/// assert_eq!(header.format_version, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// `fetchq.info()` version of the dumped database.
    pub engine_version: String,
    /// Schema version of the dumped database.
    pub schema_version: i32,
    /// When the snapshot was taken (database clock).
    pub created_at: DateTime<Utc>,
    /// The program that wrote the file.
    pub tool: String,
    /// Optional sections present: `logs`, `metrics`.
    pub includes: Vec<String>,
    /// Column names of document lines.
    pub doc_columns: Vec<String>,
    /// Column names of log lines.
    pub log_columns: Vec<String>,
    /// Column names of metric snapshot lines.
    pub metric_columns: Vec<String>,
    /// The queues, in the order of their sections.
    pub queues: Vec<QueueHeader>,
}

/// One queue of a dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueHeader {
    /// Queue name.
    pub name: String,
    /// The queue's settings row (`fetchq.queues` without its id): `max_attempts`,
    /// `logs_retention`, `retry_delay`, `is_active`, `current_version`, ...
    pub settings: serde_json::Value,
    /// The version workers target by default.
    pub current_version: i32,
    /// Documents by status in the snapshot (they are the documents in the file).
    pub counts: Counts,
    /// Counters at the snapshot (packed values plus unpacked deltas).
    pub counters: BTreeMap<String, i64>,
    /// Active (leased) documents: a restore makes them pending and due at once.
    pub active_restored_as_due: i64,
    /// Error log lines in the file (None: logs not included).
    pub logs: Option<i64>,
    /// Metric snapshot lines in the file (None: metrics not included).
    pub metrics: Option<i64>,
    /// The cron schedules whose target is this queue, by name (format
    /// version 2; empty in a version 1 file or a dump of schema 17 or older).
    #[serde(default)]
    pub schedules: Vec<ScheduleEntry>,
}

/// A cron schedule of a dump: what `fetchq.schedule_set` takes, without its
/// queue (the queue whose header entry holds it). Its next tick and tick
/// counters are not dumped: a restored schedule fires from its first tick
/// after the restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleEntry {
    /// The schedule's name (unique in a database).
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub time_zone: String,
    /// The subject of the document it fires.
    pub subject: String,
    /// The document's payload.
    pub payload: serde_json::Value,
    /// The document's version when a tick pushes it.
    pub version: i32,
    /// The document's priority.
    pub priority: i32,
}

/// Documents by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Every document.
    pub cnt: i64,
    /// Planned (0).
    pub pln: i64,
    /// Pending (1).
    pub pnd: i64,
    /// Active (2).
    pub act: i64,
    /// Completed (3).
    pub cpl: i64,
    /// Killed / dead (-1).
    pub kll: i64,
}

/// The kind of rows a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionKind {
    /// Documents.
    Docs,
    /// Error log entries.
    Logs,
    /// Metric snapshots.
    Metrics,
}

/// A line that starts a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// What the rows are.
    pub section: SectionKind,
    /// Which queue they belong to.
    pub queue: String,
    /// How many data lines follow.
    pub rows: i64,
}

/// The last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// Always [`FORMAT_NAME`].
    pub end: String,
    /// Data lines in the whole file.
    pub rows: i64,
    /// Hex SHA-256 of the uncompressed bytes before this line.
    pub sha256: String,
}

/// Turns a COPY text-format line (without its newline) back into its text:
/// the escapes PostgreSQL writes are `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, `\v`.
pub(crate) fn copy_unescape(line: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && i + 1 < line.len() {
            let c = line[i + 1];
            out.push(match c {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'v' => 0x0b,
                other => other,
            });
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
}

/// Writes `text` as a JSON string the way PostgreSQL's `escape_json` does.
pub(crate) fn json_string(text: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&text[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
}

/// Writes a timestamptz in PostgreSQL's ISO output (`2026-01-02 03:04:05.6+00`,
/// the session in UTC) as the JSON string `json_build_array` gives
/// (`"2026-01-02T03:04:05.6+00:00"`); `infinity` and the like stay as they are.
pub(crate) fn json_timestamp(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    match text.iter().position(|&b| b == b' ') {
        Some(space)
            if text[..space].contains(&b'-')
                && text[..space].first().is_some_and(u8::is_ascii_digit) =>
        {
            out.extend_from_slice(&text[..space]);
            out.push(b'T');
            let rest = &text[space + 1..];
            // the zone: +HH (ISO) is +HH:MM in XSD; an era suffix (" BC") stays after it
            let zone = rest.iter().position(|&b| b == b'+' || b == b'-');
            match zone {
                Some(z) => {
                    let tail = &rest[z..];
                    let end = tail.iter().position(|&b| b == b' ').unwrap_or(tail.len());
                    out.extend_from_slice(&rest[..z]);
                    out.extend_from_slice(&tail[..end]);
                    if end == 3 {
                        out.extend_from_slice(b":00");
                    }
                    out.extend_from_slice(&tail[end..]);
                }
                None => out.extend_from_slice(rest),
            }
        }
        _ => out.extend_from_slice(text),
    }
    out.push(b'"');
}

/// Escapes one line of text (without its newline) for COPY text format input.
pub(crate) fn copy_escape(line: &[u8], out: &mut Vec<u8>) {
    // runs without a byte to escape are copied whole
    let mut start = 0;
    for (i, &b) in line.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.extend_from_slice(&line[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&line[start..]);
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trip() {
        let text = br#"["a\\b", "c\"d", "tab	x"]"#;
        let mut esc = Vec::new();
        copy_escape(text, &mut esc);
        let mut back = Vec::new();
        copy_unescape(&esc, &mut back);
        assert_eq!(back, text);
    }
}
