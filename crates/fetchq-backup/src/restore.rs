//! Reading a dump back: a blocking reader thread decompresses, hashes and
//! checks the structure; the async side COPYs each section into a staging
//! table and moves it into the queue's tables, all in one transaction that
//! commits only after the trailer's checksum matched.

use std::io::{BufRead, BufReader, Read};

use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::format::{
    DOC_COLUMNS, FORMAT_NAME, FORMAT_VERSION, Header, MAX_KEY_CHARS, Section, SectionKind, Trailer,
    copy_escape, doc_columns_of, hex,
};
use crate::{OnConflict, RestoreOptions, RestoreSummary, RestoredQueue};

/// The documents table's columns in the order of a document line (of
/// format version 2; a version 1 line gets a NULL key).
const DOC_COPY_COLUMNS: &str = "subject, version, priority, status, attempts, iterations, \
     next_iteration, created_at, last_iteration, lease_token, payload, key";

/// Escaped rows gathered before they go to the database.
const CHUNK: usize = 256 * 1024;

/// Longest line accepted (a document with a very large payload); past it the
/// input is treated as corrupted instead of filling memory.
pub(crate) const MAX_LINE: usize = 256 * 1024 * 1024;

/// What the documents of a section count: a queue the restore created gets
/// its status and version counters from these instead of scanning its table
/// again.
#[derive(Debug, Default)]
struct DocCounts {
    /// Planned documents.
    pln: i64,
    /// Pending documents.
    pnd: i64,
    /// Active documents in the file (restored pending).
    act: i64,
    /// Completed documents.
    cpl: i64,
    /// Dead documents.
    kll: i64,
    /// Documents by version.
    versions: std::collections::BTreeMap<i64, i64>,
}

impl DocCounts {
    fn add(&mut self, status: i64, version: i64) {
        match status {
            0 => self.pln += 1,
            1 => self.pnd += 1,
            2 => self.act += 1,
            3 => self.cpl += 1,
            _ => self.kll += 1,
        }
        *self.versions.entry(version).or_default() += 1;
    }

    /// The counters of a queue holding exactly these documents (the active
    /// ones now pending), as `fetchq.metric_reset` would compute them.
    fn counters(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let cnt = self.pln + self.pnd + self.act + self.cpl + self.kll;
        for (k, v) in [
            ("cnt", cnt),
            ("pln", self.pln),
            ("pnd", self.pnd + self.act),
            ("act", 0),
            ("cpl", self.cpl),
            ("kll", self.kll),
        ] {
            m.insert(k.to_owned(), v.into());
        }
        for (version, n) in &self.versions {
            m.insert(format!("v{version}"), (*n).into());
        }
        serde_json::Value::Object(m)
    }
}

enum In {
    Header(Box<Header>),
    Section(Section),
    Rows(Vec<u8>),
    /// The section's rows were all sent, with what its documents count.
    EndSection(Box<DocCounts>),
    Done(Trailer),
    Fail(Error),
}

/// Reads one line into `line` (cleared first), newline included. Returns
/// false at the end of the input.
fn read_line(input: &mut dyn BufRead, line: &mut Vec<u8>) -> Result<bool> {
    line.clear();
    loop {
        let buf = input.fill_buf().map_err(Error::Read)?;
        if buf.is_empty() {
            return Ok(!line.is_empty());
        }
        let (used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + used > MAX_LINE {
            return Err(Error::Corrupt(format!(
                "a line longer than {MAX_LINE} bytes"
            )));
        }
        line.extend_from_slice(&buf[..used]);
        input.consume(used);
        if done {
            return Ok(true);
        }
    }
}

fn open(input: impl Read + 'static) -> Result<Box<dyn BufRead>> {
    let mut raw = BufReader::with_capacity(256 * 1024, input);
    let head = raw.fill_buf().map_err(Error::Read)?;
    if head.is_empty() {
        return Err(Error::NotADump("the input is empty".into()));
    }
    Ok(if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let dec = zstd::Decoder::with_buffer(raw).map_err(Error::Read)?;
        Box::new(BufReader::with_capacity(256 * 1024, dec))
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    })
}

fn send(tx: &mpsc::Sender<In>, msg: In) -> Result<()> {
    // the restore side stopped: it reports its own error
    tx.blocking_send(msg)
        .map_err(|_| Error::Read(std::io::Error::other("the restore stopped")))
}

fn read_stream(input: impl Read + 'static, tx: &mpsc::Sender<In>) -> Result<()> {
    let mut input = open(input)?;
    {
        let head = input.fill_buf().map_err(Error::Read)?;
        if !head.starts_with(b"{") {
            return Err(Error::NotADump(
                "it does not start with a fetchq dump header".into(),
            ));
        }
    }
    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(64 * 1024);
    if !read_line(&mut *input, &mut line)? || !line.ends_with(b"\n") {
        return Err(Error::Truncated("the header line is incomplete".into()));
    }
    hasher.update(&line);
    let value: serde_json::Value = serde_json::from_slice(&line)
        .map_err(|e| Error::NotADump(format!("the first line is not JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(Error::NotADump(
            "the header has no \"format\":\"fetchq-dump\"".into(),
        ));
    }
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let version = u32::try_from(version).unwrap_or(u32::MAX);
    let Some(doc_columns) = doc_columns_of(version) else {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    };
    let header: Header =
        serde_json::from_value(value).map_err(|e| Error::Corrupt(format!("bad header: {e}")))?;
    // the document lines' columns are those of the version, in its order
    if header
        .doc_columns
        .iter()
        .map(String::as_str)
        .ne(DOC_COLUMNS[..doc_columns].iter().copied())
    {
        return Err(Error::Corrupt(format!(
            "the header's document columns {:?} are not those of format version {version}",
            header.doc_columns
        )));
    }
    if version < 2 && header.queues.iter().any(|q| !q.schedules.is_empty()) {
        return Err(Error::Corrupt(
            "schedules in a file of format version 1".into(),
        ));
    }

    // the sections the header announces, in order
    let mut expected = Vec::new();
    for q in &header.queues {
        expected.push((SectionKind::Docs, q.name.clone(), q.counts.cnt));
        if let Some(n) = q.logs {
            expected.push((SectionKind::Logs, q.name.clone(), n));
        }
        if let Some(n) = q.metrics {
            expected.push((SectionKind::Metrics, q.name.clone(), n));
        }
    }
    send(tx, In::Header(Box::new(header)))?;

    let mut next = 0usize;
    let mut current: Option<(i64, i64)> = None; // (announced rows, rows seen)
    let mut current_kind = SectionKind::Docs;
    // a line that cannot be a row: reported at the trailer unless the
    // checksum says the file was damaged (the real cause)
    let mut bad_line: Option<Error> = None;
    let mut total = 0i64;
    let mut counts = DocCounts::default();
    let mut batch = Vec::with_capacity(CHUNK + 64 * 1024);
    let close = |current: &mut Option<(i64, i64)>,
                 batch: &mut Vec<u8>,
                 counts: &mut DocCounts|
     -> Result<()> {
        if let Some((want, got)) = current.take() {
            if want != got {
                return Err(Error::Corrupt(format!(
                    "a section announces {want} rows but holds {got}"
                )));
            }
            if !batch.is_empty() {
                send(tx, In::Rows(std::mem::take(batch)))?;
            }
            send(tx, In::EndSection(Box::new(std::mem::take(counts))))?;
        }
        Ok(())
    };
    loop {
        if !read_line(&mut *input, &mut line)? {
            return Err(Error::Truncated("the file ends before its trailer".into()));
        }
        if !line.ends_with(b"\n") {
            return Err(Error::Truncated("the last line is incomplete".into()));
        }
        let body = &line[..line.len() - 1];
        match body.first() {
            Some(b'[') => {
                let Some((_, got)) = current.as_mut() else {
                    return Err(Error::Corrupt("a data line outside any section".into()));
                };
                *got += 1;
                total += 1;
                hasher.update(&line);
                if bad_line.is_some() {
                    continue;
                }
                if current_kind == SectionKind::Docs {
                    let mark = batch.len();
                    match doc_to_binary(body, doc_columns, &mut batch) {
                        Ok((status, version)) => counts.add(status, version),
                        Err(e) => {
                            batch.truncate(mark);
                            bad_line = Some(e);
                            continue;
                        }
                    }
                } else {
                    copy_escape(body, &mut batch);
                    batch.push(b'\n');
                }
                if batch.len() >= CHUNK {
                    send(tx, In::Rows(std::mem::take(&mut batch)))?;
                    batch.reserve(CHUNK + 64 * 1024);
                }
            }
            Some(b'{') if body.starts_with(br#"{"end":"#) => {
                let trailer: Trailer = serde_json::from_slice(body)
                    .map_err(|e| Error::Corrupt(format!("bad trailer: {e}")))?;
                let actual = hex(&hasher.clone().finalize());
                if trailer.sha256 != actual {
                    return Err(Error::ChecksumMismatch {
                        expected: trailer.sha256,
                        actual,
                    });
                }
                if let Some(e) = bad_line {
                    return Err(e);
                }
                close(&mut current, &mut batch, &mut counts)?;
                if next != expected.len() {
                    return Err(Error::Corrupt(format!(
                        "{} section(s) announced by the header are missing",
                        expected.len() - next
                    )));
                }
                if trailer.rows != total {
                    return Err(Error::Corrupt(format!(
                        "the trailer counts {} rows, the file holds {total}",
                        trailer.rows
                    )));
                }
                if read_line(&mut *input, &mut line)? {
                    return Err(Error::Corrupt("data after the trailer".into()));
                }
                return send(tx, In::Done(trailer));
            }
            Some(b'{') => {
                hasher.update(&line);
                let section: Section = serde_json::from_slice(body)
                    .map_err(|e| Error::Corrupt(format!("bad section line: {e}")))?;
                close(&mut current, &mut batch, &mut counts)?;
                let Some((kind, queue, rows)) = expected.get(next) else {
                    return Err(Error::Corrupt(
                        "a section the header does not announce".into(),
                    ));
                };
                if section.section != *kind || section.queue != *queue || section.rows != *rows {
                    return Err(Error::Corrupt(format!(
                        "section {:?} of \"{}\" found where the header announces {kind:?} of \"{queue}\"",
                        section.section, section.queue
                    )));
                }
                next += 1;
                current_kind = section.section;
                current = Some((section.rows, 0));
                send(tx, In::Section(section))?;
            }
            _ => {
                return Err(Error::Corrupt(
                    "a line that is neither JSON array nor object".into(),
                ));
            }
        }
    }
}

/// Turns a document line (a JSON array of the first `columns` of
/// [`DOC_COLUMNS`], 11 in a version 1 file, 12 in a version 2 one) into one
/// binary COPY tuple of the documents table, and checks what the engine needs
/// of a document (a known status, a version not below zero, a subject, a key
/// of 1 to 255 characters or none). Returns its status and version.
fn doc_to_binary(body: &[u8], columns: usize, out: &mut Vec<u8>) -> Result<(i64, i64)> {
    let cols: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
        .map_err(|e| Error::Corrupt(format!("bad document line: {e}")))?;
    if cols.len() != columns {
        return Err(Error::Corrupt(format!(
            "a document line of {} columns instead of {columns}",
            cols.len(),
        )));
    }
    let shown = || {
        let text = String::from_utf8_lossy(body);
        text.chars().take(200).collect::<String>()
    };
    let invalid = || Error::Corrupt(format!("invalid document: {}", shown()));
    // the key: null, or a string of 1 to 255 characters
    if let Some(key) = cols.get(11).map(|k| k.get())
        && key != "null"
    {
        let reason = if !key.starts_with('"') {
            "it is not a string".to_owned()
        } else {
            match crate::binary::key(key) {
                Ok(_) => String::new(),
                Err(_) => match serde_json::from_str::<String>(key) {
                    Ok(text) if text.is_empty() => "it is empty".to_owned(),
                    Ok(text) => format!(
                        "it is {} characters long, more than {MAX_KEY_CHARS}",
                        text.chars().count()
                    ),
                    Err(_) => "it is not a valid JSON string".to_owned(),
                },
            }
        };
        if !reason.is_empty() {
            return Err(Error::Corrupt(format!(
                "invalid document key ({reason}): {}",
                shown()
            )));
        }
    }
    // status and version are integers of the engine's range
    let int = |i: usize| cols[i].get().parse::<i64>().ok();
    let (Some(status), Some(version)) = (int(3), int(1)) else {
        return Err(invalid());
    };
    if !(-1..=3).contains(&status) || !(0..=i64::from(i32::MAX)).contains(&version) {
        return Err(invalid());
    }
    // an empty subject ("" and nothing else: a JSON string of no text)
    if cols[0].get() == "\"\"" {
        return Err(invalid());
    }
    crate::binary::doc_tuple(&cols, out).map_err(|_| invalid())?;
    Ok((status, version))
}

struct Target {
    name: String,
    /// The status and version counters of a created queue, counted by the
    /// reader; None: computed from the table.
    counters: Option<serde_json::Value>,
    /// Docs sections loaded straight into the created queue's table.
    docs_sections: u32,
    summary: RestoredQueue,
}

async fn recv(rx: &mut mpsc::Receiver<In>) -> Result<In> {
    match rx.recv().await {
        Some(In::Fail(e)) => Err(e),
        Some(msg) => Ok(msg),
        None => Err(Error::Read(std::io::Error::other("the reader stopped"))),
    }
}

async fn apply(
    pool: &PgPool,
    conn: &mut PgConnection,
    opts: &RestoreOptions,
    rx: &mut mpsc::Receiver<In>,
) -> Result<RestoreSummary> {
    let In::Header(header) = recv(rx).await? else {
        return Err(Error::Corrupt("no header".into()));
    };
    if opts.queue.is_some() && header.queues.len() != 1 {
        return Err(Error::InvalidArgument(format!(
            "--queue renames a single queue, and this dump holds {}",
            header.queues.len()
        )));
    }
    let db_schema: i32 = sqlx::query_scalar("SELECT schema_version FROM fetchq.info()")
        .fetch_one(pool)
        .await?;
    if header.schema_version > db_schema {
        return Err(Error::SchemaTooNew {
            file: header.schema_version,
            database: db_schema,
        });
    }

    // the file's schedules, checked (and their name conflicts found) before
    // anything is written
    let schedules = check_schedules(&header, opts)?;

    let mut tx: Transaction<'_, Postgres> = conn.begin().await?;
    let existing_schedules: Vec<String> = if schedules.is_empty() {
        Vec::new()
    } else {
        let names: Vec<&str> = schedules.iter().map(|(_, s)| s.name.as_str()).collect();
        sqlx::query_scalar(include_str!("../sql/restore_schedule_conflicts.sql"))
            .bind(&names)
            .fetch_all(&mut *tx)
            .await?
    };

    let mut targets = Vec::with_capacity(header.queues.len());
    for q in &header.queues {
        let name = opts.queue.clone().unwrap_or_else(|| q.name.clone());
        fetchq_core::validate_queue_name(&name)?;
        let mut exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM fetchq.queues WHERE name = $1 FOR UPDATE)",
        )
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            // a restore or a client creating the same queue at the same
            // moment: the one that commits second sees was_created false
            let created: bool =
                sqlx::query_scalar("SELECT was_created FROM fetchq.queue_create($1)")
                    .bind(&name)
                    .fetch_one(&mut *tx)
                    .await?;
            exists = !created;
            if created {
                sqlx::query(include_str!("../sql/restore_counters.sql"))
                    .bind(&name)
                    .bind(sqlx::types::Json(&q.counters))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if exists && opts.on_conflict == OnConflict::Fail {
            return Err(Error::QueueExists(name));
        }
        if !exists || opts.on_conflict == OnConflict::Replace {
            sqlx::query(include_str!("../sql/restore_settings.sql"))
                .bind(&name)
                .bind(&q.settings)
                .bind(!exists)
                .execute(&mut *tx)
                .await?;
            sqlx::query(include_str!("../sql/restore_rate_limit.sql"))
                .bind(&name)
                .bind(&q.settings)
                .execute(&mut *tx)
                .await?;
            sqlx::query(include_str!("../sql/restore_key_concurrency.sql"))
                .bind(&name)
                .bind(&q.settings)
                .execute(&mut *tx)
                .await?;
            sqlx::query(include_str!("../sql/restore_completed_retention.sql"))
                .bind(&name)
                .bind(&q.settings)
                .execute(&mut *tx)
                .await?;
        }
        targets.push(Target {
            name: name.clone(),
            counters: None,
            docs_sections: 0,
            summary: RestoredQueue {
                source: q.name.clone(),
                name,
                created: !exists,
                docs_in_file: q.counts.cnt,
                docs_written: 0,
                active_restored_as_due: q.counts.act,
                logs: 0,
                metrics: 0,
                schedules_in_file: i64::try_from(q.schedules.len()).unwrap_or(i64::MAX),
                schedules_written: 0,
            },
        });
    }
    // a queue that exists is the first refusal to report, then a schedule
    // (before any schedule or document is written)
    if opts.on_conflict == OnConflict::Fail
        && let Some(name) = existing_schedules.first()
    {
        return Err(Error::ScheduleExists(name.clone()));
    }
    // the queues exist now: their schedules (a new one is planned from its
    // first tick after now() by the maintenance leader)
    for (pos, schedule) in &schedules {
        if existing_schedules.contains(&schedule.name) && opts.on_conflict == OnConflict::Skip {
            continue;
        }
        let created: bool = sqlx::query_scalar(include_str!("../sql/restore_schedule.sql"))
            .bind(&schedule.name)
            .bind(&schedule.cron)
            .bind(&schedule.time_zone)
            .bind(&schedule.queue)
            .bind(&schedule.subject)
            .bind(&schedule.payload)
            .bind(schedule.version)
            .bind(schedule.priority)
            .fetch_one(&mut *tx)
            .await?;
        if !created && !existing_schedules.contains(&schedule.name) {
            // created by someone else since the check
            match opts.on_conflict {
                OnConflict::Fail => return Err(Error::ScheduleExists(schedule.name.clone())),
                // it was changed (there is no "insert unless present" in
                // schedule_set): the file's version wins, as under replace
                OnConflict::Skip | OnConflict::Replace => {}
            }
        }
        targets[*pos].summary.schedules_written += 1;
    }
    sqlx::raw_sql(include_str!("../sql/restore_setup.sql"))
        .execute(&mut *tx)
        .await?;

    let conflict = match opts.on_conflict {
        OnConflict::Replace => {
            "DO UPDATE SET version = excluded.version, priority = excluded.priority, \
             status = excluded.status, attempts = excluded.attempts, iterations = excluded.iterations, \
             next_iteration = excluded.next_iteration, created_at = excluded.created_at, \
             last_iteration = excluded.last_iteration, lease_token = excluded.lease_token, \
             payload = excluded.payload, key = excluded.key"
        }
        OnConflict::Skip | OnConflict::Fail => "DO NOTHING",
    };

    let trailer = loop {
        match recv(rx).await? {
            In::Section(section) => {
                let Some(pos) = header.queues.iter().position(|q| q.name == section.queue) else {
                    return Err(Error::Corrupt("a section of an unknown queue".into()));
                };
                let target = &mut targets[pos];
                let table = |kind: &str| -> String {
                    format!(
                        "{}.{}",
                        quote_ident("fetchq_data"),
                        quote_ident(&format!("{}__{kind}", target.name))
                    )
                };
                let docs = table("docs");
                // a queue this restore created is empty and seen by nobody
                // else: its documents go straight into its table, with the
                // secondary indexes built once at the end (as pg_restore does)
                let direct = section.section == SectionKind::Docs && target.summary.created;
                let mut index_defs: Vec<String> = Vec::new();
                let copy_sql = match section.section {
                    SectionKind::Docs if direct => {
                        let indexes: Vec<(String, String)> =
                            sqlx::query_as(include_str!("../sql/restore_index_defs.sql"))
                                .bind(format!("{}__docs", target.name))
                                .fetch_all(&mut *tx)
                                .await?;
                        let pkey: Option<(String, String)> =
                            sqlx::query_as(include_str!("../sql/restore_pkey.sql"))
                                .bind(&docs)
                                .fetch_optional(&mut *tx)
                                .await?;
                        if let Some((name, def)) = pkey {
                            sqlx::query(&format!("ALTER TABLE {docs} DROP CONSTRAINT {name}"))
                                .execute(&mut *tx)
                                .await?;
                            // first built again: a duplicate subject fails there
                            index_defs
                                .push(format!("ALTER TABLE {docs} ADD CONSTRAINT {name} {def}"));
                        }
                        for (name, def) in indexes {
                            sqlx::query(&format!("DROP INDEX fetchq_data.{name}"))
                                .execute(&mut *tx)
                                .await?;
                            index_defs.push(def);
                        }
                        format!("COPY {docs} ({DOC_COPY_COLUMNS}) FROM STDIN WITH (FORMAT binary)")
                    }
                    SectionKind::Docs => {
                        format!(
                            "COPY fetchq_restore_docs ({DOC_COPY_COLUMNS}) FROM STDIN WITH (FORMAT binary)"
                        )
                    }
                    _ => "COPY fetchq_restore_rows (d) FROM STDIN".to_owned(),
                };
                let (copied, counts) = {
                    let mut copy = tx.copy_in_raw(&copy_sql).await?;
                    let binary = section.section == SectionKind::Docs;
                    if binary {
                        copy.send(crate::binary::HEADER).await?;
                    }
                    let counts = loop {
                        match rx.recv().await {
                            Some(In::Rows(rows)) => {
                                copy.send(rows).await?;
                            }
                            Some(In::EndSection(counts)) => break counts,
                            Some(In::Fail(e)) => {
                                let _ = copy.abort("the dump is not valid").await;
                                return Err(e);
                            }
                            _ => {
                                let _ = copy.abort("the dump is not valid").await;
                                return Err(Error::Corrupt("unexpected line in a section".into()));
                            }
                        }
                    };
                    if binary {
                        copy.send(crate::binary::TRAILER).await?;
                    }
                    (copy.finish().await?, counts)
                };
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                match section.section {
                    SectionKind::Docs => {
                        // the reader checked every document (doc_to_binary)
                        if direct {
                            // a scan of the whole table only when needed
                            if counts.act > 0 {
                                sqlx::query(
                                    &include_str!("../sql/restore_active_as_due.sql")
                                        .replace("{docs}", &docs),
                                )
                                .execute(&mut *tx)
                                .await?;
                            }
                            // the index builds sort in memory where the default
                            // (64MB) would spill a large queue to disk
                            if !index_defs.is_empty() {
                                sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            for def in &index_defs {
                                sqlx::query(def).execute(&mut *tx).await?;
                            }
                            target.summary.docs_written += count(copied);
                            // a second docs section of the queue (an odd file):
                            // count from the table
                            target.counters = if target.docs_sections == 0 {
                                Some(counts.counters())
                            } else {
                                None
                            };
                            target.docs_sections += 1;
                        } else {
                            let sql = include_str!("../sql/restore_docs.sql")
                                .replace("{docs}", &docs)
                                .replace("{conflict}", conflict);
                            let done = sqlx::query(&sql).execute(&mut *tx).await?;
                            target.summary.docs_written += count(done.rows_affected());
                            sqlx::query("TRUNCATE fetchq_restore_docs")
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    SectionKind::Logs => {
                        let sql = include_str!("../sql/restore_logs.sql")
                            .replace("{logs}", &table("logs"));
                        let done = sqlx::query(&sql).execute(&mut *tx).await?;
                        target.summary.logs += count(done.rows_affected());
                        sqlx::query("TRUNCATE fetchq_restore_rows")
                            .execute(&mut *tx)
                            .await?;
                    }
                    SectionKind::Metrics => {
                        let sql = include_str!("../sql/restore_metrics.sql")
                            .replace("{metrics}", &table("metrics"));
                        let done = sqlx::query(&sql).execute(&mut *tx).await?;
                        target.summary.metrics += count(done.rows_affected());
                        sqlx::query("TRUNCATE fetchq_restore_rows")
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            In::Done(trailer) => break trailer,
            _ => return Err(Error::Corrupt("unexpected line".into())),
        }
    };

    for target in &targets {
        if let Some(counters) = &target.counters {
            // what metric_reset writes, without scanning the table twice
            sqlx::query(include_str!("../sql/restore_status_counters_clear.sql"))
                .bind(&target.name)
                .execute(&mut *tx)
                .await?;
            sqlx::query(include_str!("../sql/restore_status_counters.sql"))
                .bind(&target.name)
                .bind(counters)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("SELECT * FROM fetchq.metric_reset($1)")
                .bind(&target.name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("SELECT fetchq.pending_hint($1)")
            .bind(&target.name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(RestoreSummary {
        header: *header,
        rows: trailer.rows,
        queues: targets.into_iter().map(|t| t.summary).collect(),
    })
}

/// The schedules of the file as they will be set, each with the position of
/// its queue in the header: their target is the queue's restored name. Each
/// is checked as [`fetchq_core::Client::schedule_set`] checks it (name, cron
/// expression, time zone, subject, version); a name may appear once.
fn check_schedules(
    header: &Header,
    opts: &RestoreOptions,
) -> Result<Vec<(usize, fetchq_core::CronSchedule)>> {
    let mut out: Vec<(usize, fetchq_core::CronSchedule)> = Vec::new();
    for (pos, q) in header.queues.iter().enumerate() {
        let queue = opts.queue.clone().unwrap_or_else(|| q.name.clone());
        for entry in &q.schedules {
            let schedule = fetchq_core::CronSchedule {
                name: entry.name.clone(),
                cron: entry.cron.clone(),
                time_zone: entry.time_zone.clone(),
                queue: queue.clone(),
                subject: entry.subject.clone(),
                payload: entry.payload.clone(),
                version: entry.version,
                priority: entry.priority,
            };
            if let Err(e) = schedule.validate() {
                return Err(Error::Corrupt(format!(
                    "invalid schedule {:?} of queue \"{}\": {e}",
                    entry.name.chars().take(120).collect::<String>(),
                    q.name
                )));
            }
            if out.iter().any(|(_, s)| s.name == entry.name) {
                return Err(Error::Corrupt(format!(
                    "schedule \"{}\" appears twice in the file",
                    entry.name
                )));
            }
            out.push((pos, schedule));
        }
    }
    Ok(out)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) async fn restore<R: Read + Send + 'static>(
    pool: &PgPool,
    opts: &RestoreOptions,
    input: R,
) -> Result<RestoreSummary> {
    let (tx, mut rx) = mpsc::channel::<In>(8);
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(e) = read_stream(input, &tx) {
            let _ = tx.blocking_send(In::Fail(e));
        }
    });
    let mut conn = pool.acquire().await?;
    let result = apply(pool, &mut conn, opts, &mut rx).await;
    if result.is_err() {
        // a failure can leave the connection mid-COPY: never give it back to
        // the pool; closing it also rolls back whatever the restore did
        let _ = conn.detach().close_hard().await;
    }
    let result = match result {
        // the database refused something: if the file itself is bad (a
        // flipped byte, a cut), say that instead, it is the cause
        Err(Error::Database(db)) => {
            let mut file_error = None;
            while let Some(msg) = rx.recv().await {
                if let In::Fail(e) = msg {
                    file_error = Some(e);
                    break;
                }
            }
            Err(file_error.unwrap_or(Error::Database(db)))
        }
        other => other,
    };
    drop(rx);
    let _ = reader.await;
    result
}
