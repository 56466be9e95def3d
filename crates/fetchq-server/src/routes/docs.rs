//! Documents: add (push, upsert, append), list with keyset paging, show one.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use fetchq_core::{DocFilter, DocState, NewDoc, Schedule, Status, Upserted};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authorized, need};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, ApiJson, ApiQuery, QueueName, QueueSubject, check_subject};
use crate::routes::logs::LogView;
use crate::state::AppState;

/// Most documents in one `POST .../docs`.
pub const MAX_DOCS_PER_CALL: usize = 10_000;

/// How documents are added.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// New subjects are queued, existing ones left alone (default).
    #[default]
    Push,
    /// New subjects are queued, existing ones updated (unless leased).
    Upsert,
    /// Every document is queued under a generated subject.
    Append,
}

/// One document to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocIn {
    /// Unique subject, 1 to 255 characters (not allowed with `append`).
    pub subject: Option<String>,
    /// Version (default 0).
    pub version: Option<i64>,
    /// Priority, higher first (default 0).
    pub priority: Option<i64>,
    /// When it is due (RFC 3339); or use `delay`; default now.
    pub next_iteration: Option<String>,
    /// Due this long from now: `"5m"`, `"90s"`, `"2h"`, `"1d"`, `"500ms"`.
    pub delay: Option<String>,
    /// JSON payload (default `{}`).
    #[schema(value_type = Object)]
    pub payload: Option<Value>,
    /// Concurrency key, 1 to 255 characters (e.g. the host): a queue with key
    /// concurrency runs at most its cap of documents of one key at once.
    /// Push and upsert (an upsert sets it, or clears it when left out).
    pub key: Option<String>,
}

/// `POST /api/v1/queues/{queue}/docs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDocs {
    /// `push` (default), `upsert` or `append`.
    #[serde(default)]
    pub mode: Mode,
    /// 1 to 10,000 documents.
    pub docs: Vec<DocIn>,
}

/// How many documents were added or changed.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Added {
    /// Documents sent.
    pub received: usize,
    /// New documents queued (push, upsert, append).
    pub queued: u64,
    /// Existing documents updated (upsert).
    pub updated: u64,
    /// Existing documents left alone: duplicates for push, leased ones for upsert.
    pub unchanged: u64,
    /// The generated subjects, in order (append).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
}

/// A document that passed every check.
struct Checked {
    doc: NewDoc,
    version: i32,
    priority: i32,
    payload: Value,
}

fn to_new_doc(doc: &DocIn, mode: Mode) -> Result<Checked, ApiError> {
    let version = extract::version(doc.version)?.unwrap_or(0);
    let priority = match doc.priority {
        None => 0,
        Some(p) => i32::try_from(p)
            .map_err(|_| ApiError::bad_request(format!("priority must fit 32 bits, got {p}")))?,
    };
    let when = extract::schedule(
        doc.next_iteration.as_deref(),
        doc.delay.as_deref(),
        Schedule::Now,
    )?;
    let payload = doc.payload.clone().unwrap_or_else(|| serde_json::json!({}));
    let subject = match (mode, &doc.subject) {
        (Mode::Append, Some(_)) => {
            return Err(ApiError::bad_request(
                "append generates the subject: leave it out",
            ));
        }
        (Mode::Append, None) => String::from("-"),
        (_, None) => return Err(ApiError::bad_request("subject is required")),
        (_, Some(s)) => {
            check_subject(s)?;
            s.clone()
        }
    };
    if mode == Mode::Append && doc.next_iteration.is_some() | doc.delay.is_some() {
        return Err(ApiError::bad_request(
            "append queues documents due now: leave out next_iteration and delay",
        ));
    }
    let mut new = NewDoc::new(subject)
        .version(version)
        .priority(priority)
        .at(when)
        .payload(payload.clone());
    if let Some(key) = &doc.key {
        let chars = key.chars().count();
        if chars == 0 || chars > 255 || key.contains('\0') {
            return Err(ApiError::bad_request(
                "key must be 1 to 255 characters, without NUL",
            ));
        }
        new = new.key(key.clone());
    }
    Ok(Checked {
        doc: new,
        version,
        priority,
        payload,
    })
}

/// Adds documents: one call for the whole batch with `push`; one
/// transaction for the batch with `upsert` and `append` (all or nothing).
/// Every document is checked first: one bad document is a 400 naming its
/// index, and nothing is written.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/docs", tag = "docs", security(("bearer" = ["push"])), request_body = AddDocs,
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = Added), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add(
    _: Authorized<need::Push>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<AddDocs>,
) -> Result<Json<Added>, ApiError> {
    if body.docs.len() > MAX_DOCS_PER_CALL {
        return Err(ApiError::too_large(format!(
            "at most {MAX_DOCS_PER_CALL} documents a call, got {}",
            body.docs.len()
        )));
    }
    let mut docs = Vec::with_capacity(body.docs.len());
    for (i, doc) in body.docs.iter().enumerate() {
        docs.push(to_new_doc(doc, body.mode).map_err(|e| e.at(&format!("docs[{i}]")))?);
    }
    let c = &state.client;
    let mut added = Added {
        received: docs.len(),
        ..Added::default()
    };
    if docs.is_empty() {
        c.queue_status(&queue).await?;
        return Ok(Json(added));
    }
    match body.mode {
        Mode::Push => {
            let new: Vec<NewDoc> = docs.into_iter().map(|c| c.doc).collect();
            added.queued = c.push_many(&queue, &new).await?;
            added.unchanged = new.len() as u64 - added.queued;
        }
        Mode::Upsert => {
            let mut tx = c.pool().begin().await.map_err(fetchq_core::Error::from)?;
            for (i, Checked { doc, .. }) in docs.iter().enumerate() {
                match c
                    .upsert_with(&mut *tx, &queue, doc)
                    .await
                    .map_err(|e| ApiError::from(e).at(&format!("docs[{i}]")))?
                {
                    Upserted::Inserted => added.queued += 1,
                    Upserted::Updated => added.updated += 1,
                    Upserted::Unchanged => added.unchanged += 1,
                }
            }
            tx.commit().await.map_err(fetchq_core::Error::from)?;
        }
        Mode::Append => {
            let mut tx = c.pool().begin().await.map_err(fetchq_core::Error::from)?;
            let mut subjects = Vec::with_capacity(docs.len());
            for (i, d) in docs.iter().enumerate() {
                let subject = c
                    .append_keyed_with(
                        &mut *tx,
                        &queue,
                        &d.payload,
                        d.version,
                        d.priority,
                        d.doc.get_key(),
                    )
                    .await
                    .map_err(|e| ApiError::from(e).at(&format!("docs[{i}]")))?;
                subjects.push(subject);
            }
            tx.commit().await.map_err(fetchq_core::Error::from)?;
            added.queued = subjects.len() as u64;
            added.subjects = Some(subjects);
        }
    }
    Ok(Json(added))
}

/// A document as stored; never its lease token.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocView {
    /// Subject.
    pub subject: String,
    /// Version.
    pub version: i32,
    /// Priority.
    pub priority: i32,
    /// `pending`, `planned`, `active`, `completed` or `dead`.
    pub status: String,
    /// Failed attempts since the last success.
    pub attempts: i32,
    /// Times processed.
    pub iterations: i64,
    /// When it is due (for an active document: when its lease runs out).
    pub next_iteration: DateTime<Utc>,
    /// When it was first queued.
    pub created_at: DateTime<Utc>,
    /// When it was last processed.
    pub last_iteration: Option<DateTime<Utc>>,
    /// Whether a worker holds it now.
    pub leased: bool,
    /// When the worker's lease runs out, if leased.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// JSON payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Concurrency key, if any.
    pub key: Option<String>,
}

impl From<DocState> for DocView {
    fn from(d: DocState) -> Self {
        let leased = d.status == Status::Active;
        Self {
            subject: d.subject,
            version: d.version,
            priority: d.priority,
            status: extract::status_name(d.status).to_owned(),
            attempts: d.attempts,
            iterations: d.iterations,
            next_iteration: d.next_iteration,
            created_at: d.created_at,
            last_iteration: d.last_iteration,
            leased,
            lease_expires_at: leased.then_some(d.next_iteration),
            payload: d.payload,
            key: d.key,
        }
    }
}

/// Filters and paging of `GET .../docs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDocs {
    /// `pending`, `planned`, `active`, `completed` or `dead`.
    pub status: Option<String>,
    /// Only this version.
    pub version: Option<i64>,
    /// Only subjects starting with this text (literally).
    pub subject_prefix: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// The last subject of the previous page.
    pub after: Option<String>,
}

/// A page of documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocPage {
    /// The documents, in subject order.
    pub docs: Vec<DocView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

pub(crate) fn filter(
    status: Option<&str>,
    version: Option<i64>,
    prefix: Option<&str>,
) -> Result<DocFilter, ApiError> {
    let mut f = DocFilter::new();
    if let Some(s) = status {
        f = f.status(extract::status(s)?);
    }
    if let Some(v) = extract::version(version)? {
        f = f.version(v);
    }
    if let Some(p) = prefix {
        if p.contains('\0') || p.chars().count() > 255 {
            return Err(ApiError::bad_request(
                "subject_prefix: at most 255 characters, no NUL",
            ));
        }
        f = f.subject_prefix(p);
    }
    Ok(f)
}

/// Documents by filter, in subject order, keyset-paged with `after` (no count).
#[utoipa::path(get, path = "/api/v1/queues/{queue}/docs", tag = "docs", security(("bearer" = ["read"])),
    params(("queue" = String, Path, description = "queue name"), ListDocs),
    responses((status = 200, body = DocPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<ListDocs>,
) -> Result<Json<DocPage>, ApiError> {
    let limit = extract::limit(q.limit, 100, 1000)?;
    let f = filter(q.status.as_deref(), q.version, q.subject_prefix.as_deref())?;
    if let Some(a) = &q.after
        && (a.contains('\0') || a.chars().count() > 255)
    {
        return Err(ApiError::bad_request(
            "after: at most 255 characters, no NUL",
        ));
    }
    let docs = state
        .client
        .doc_list(&queue, &f, q.after.as_deref(), limit)
        .await?;
    let next_after = (docs.len() == limit as usize)
        .then(|| docs.last().map(|d| d.subject.clone()))
        .flatten();
    Ok(Json(DocPage {
        docs: docs.into_iter().map(DocView::from).collect(),
        next_after,
    }))
}

/// One document with its latest error log entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocDetail {
    /// The document.
    #[serde(flatten)]
    pub doc: DocView,
    /// Its 10 latest error log entries, newest first.
    pub errors: Vec<LogView>,
}

/// One document, its lease state and its latest errors.
#[utoipa::path(get, path = "/api/v1/queues/{queue}/docs/{subject}", tag = "docs", security(("bearer" = ["read"])),
    params(("queue" = String, Path, description = "queue name"), ("subject" = String, Path, description = "subject")),
    responses((status = 200, body = DocDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
    QueueSubject(queue, subject): QueueSubject,
) -> Result<Json<DocDetail>, ApiError> {
    let doc = state.client.get(&queue, &subject).await?;
    let errors = state
        .client
        .log_list(&queue, Some(&subject), None, 10)
        .await?;
    Ok(Json(DocDetail {
        doc: doc.into(),
        errors: errors.into_iter().map(LogView::from).collect(),
    }))
}

/// `GET /api/v1/queues/{queue}/docs:count`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountDocs {
    /// `pending`, `planned`, `active`, `completed` or `dead`.
    pub status: Option<String>,
    /// Only this version.
    pub version: Option<i64>,
    /// Only subjects starting with this text (literally).
    pub subject_prefix: Option<String>,
    /// Stop counting past this many, 1 to 1,000,000 (default 100,000).
    pub cap: Option<i64>,
}

/// How many documents a filter matches.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocCountView {
    /// Matching documents, at most `cap`.
    pub matched: u64,
    /// True when more than `cap` documents match.
    pub capped: bool,
}

/// How many documents match a filter (what a bulk action over it will touch),
/// counting at most `cap`: the cost is bounded by the cap, never by the queue.
#[utoipa::path(get, path = "/api/v1/queues/{queue}/docs:count", tag = "docs", security(("bearer" = ["read"])),
    params(("queue" = String, Path, description = "queue name"), CountDocs),
    responses((status = 200, body = DocCountView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn count(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<CountDocs>,
) -> Result<Json<DocCountView>, ApiError> {
    let cap = match q.cap {
        None => 100_000,
        Some(c) if (1..=1_000_000).contains(&c) => c as i32,
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "cap must be 1 to 1000000, got {c}"
            )));
        }
    };
    let f = filter(q.status.as_deref(), q.version, q.subject_prefix.as_deref())?;
    let c = state.client.doc_count(&queue, &f, cap).await?;
    Ok(Json(DocCountView {
        matched: c.matched,
        capped: c.capped,
    }))
}
