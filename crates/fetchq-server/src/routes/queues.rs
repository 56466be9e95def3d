//! Queues: list, create, show, change settings, drop, pause, resume.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use fetchq_core::{Client, Counters, QueueInfo, RateLimit, Retention};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authorized, need};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, QueueName, duration, format_duration};
use crate::state::AppState;

/// A queue: settings and O(1) counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    /// Name.
    pub name: String,
    /// Numeric id.
    pub id: i32,
    /// False while paused.
    pub is_active: bool,
    /// The version workers target by default.
    pub current_version: i32,
    /// Failed attempts before a document is dead.
    pub max_attempts: i32,
    /// How long error logs are kept (a duration such as `"1day"`).
    pub logs_retention: String,
    /// Largest payload accepted, in bytes.
    pub max_payload_size: i32,
    /// Base delay of the retry backoff.
    pub retry_delay: String,
    /// Cap of the retry backoff.
    pub retry_delay_max: String,
    /// Spread of the retry backoff (0 to 1).
    pub retry_jitter: f64,
    /// At most N leases in any window, as `N/WINDOW` (e.g. `"20/1s"`),
    /// across every worker; null without a limit.
    pub rate_limit: Option<String>,
    /// At most this many active documents per key; null without a cap.
    pub key_concurrency: Option<i32>,
    /// What happens to completed documents: `"keep"` (the default),
    /// `"at-once"` (the completion deletes them), or a duration such as
    /// `"7days"` (maintenance deletes them that long after completion).
    pub completed_retention: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Counters, exact at read (the counter writes not packed yet are added).
    pub counters: CountersView,
}

/// The standard counters of a queue.
#[derive(Debug, Serialize, ToSchema)]
#[allow(missing_docs)]
pub struct CountersView {
    pub total: i64,
    pub pending: i64,
    pub planned: i64,
    pub active: i64,
    pub completed: i64,
    pub dead: i64,
    pub entered: i64,
    pub dropped: i64,
    pub picked: i64,
    pub processed: i64,
    pub rescheduled: i64,
    pub rejected: i64,
    pub orphans: i64,
    pub errors: i64,
}

impl From<Counters> for CountersView {
    fn from(c: Counters) -> Self {
        Self {
            total: c.total,
            pending: c.pending,
            planned: c.planned,
            active: c.active,
            completed: c.completed,
            dead: c.dead,
            entered: c.entered,
            dropped: c.dropped,
            picked: c.picked,
            processed: c.processed,
            rescheduled: c.rescheduled,
            rejected: c.rejected,
            orphans: c.orphans,
            errors: c.errors,
        }
    }
}

pub(crate) async fn view(client: &Client, q: QueueInfo) -> Result<QueueView, ApiError> {
    let counters = client.metric_get_common(&q.name).await?;
    Ok(QueueView {
        counters: counters.into(),
        name: q.name,
        id: q.id,
        is_active: q.is_active,
        current_version: q.current_version,
        max_attempts: q.max_attempts,
        logs_retention: format_duration(q.logs_retention),
        max_payload_size: q.max_payload_size,
        retry_delay: format_duration(q.retry_delay),
        retry_delay_max: format_duration(q.retry_delay_max),
        retry_jitter: q.retry_jitter,
        rate_limit: q.rate_limit.map(|r| r.to_string()),
        key_concurrency: q.key_concurrency,
        completed_retention: q.completed_retention.to_string(),
        created_at: q.created_at,
    })
}

/// Every queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// The queues, by name.
    pub queues: Vec<QueueView>,
}

/// Every queue with its counters and settings.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", security(("bearer" = ["read"])),
    responses((status = 200, body = QueueList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn list(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
) -> Result<Json<QueueList>, ApiError> {
    let mut queues = Vec::new();
    for q in state.client.queue_list().await? {
        match view(&state.client, q).await {
            Ok(v) => queues.push(v),
            // dropped between the list and its counters
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(QueueList { queues }))
}

/// `POST /api/v1/queues`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    /// 1 to 40 of `a-z`, `0-9`, `_`, starting with a letter.
    pub name: String,
}

/// Creates a queue: 201 when created, 200 when it existed.
#[utoipa::path(post, path = "/api/v1/queues", tag = "queues", security(("bearer" = ["admin"])), request_body = CreateQueue,
    responses((status = 201, body = QueueView), (status = 200, body = QueueView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateQueue>,
) -> Result<(StatusCode, Json<QueueView>), ApiError> {
    fetchq_core::validate_queue_name(&body.name)?;
    let created = state.client.queue_create(&body.name).await?;
    let info = state.client.queue_status(&body.name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&state.client, info).await?)))
}

/// One queue with its counters and settings.
#[utoipa::path(get, path = "/api/v1/queues/{queue}", tag = "queues", security(("bearer" = ["read"])),
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = QueueView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
) -> Result<Json<QueueView>, ApiError> {
    let info = state.client.queue_status(&queue).await?;
    Ok(Json(view(&state.client, info).await?))
}

/// `PATCH /api/v1/queues/{queue}`: the settings to change, others left alone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchQueue {
    /// Failed attempts before a document is dead (1 or more).
    pub max_attempts: Option<i64>,
    /// The version workers target by default.
    pub current_version: Option<i64>,
    /// How long error logs are kept, e.g. `"7d"`.
    pub logs_retention: Option<String>,
    /// Largest payload accepted, in bytes.
    pub max_payload_size: Option<i64>,
    /// Base delay of the retry backoff, e.g. `"10s"`.
    pub retry_delay: Option<String>,
    /// Cap of the retry backoff, e.g. `"1h"`.
    pub retry_delay_max: Option<String>,
    /// Spread of the retry backoff, 0 to 1.
    pub retry_jitter: Option<f64>,
    /// A rate limit across every worker, `N/WINDOW` such as `"5/s"`,
    /// `"20/1s"` or `"100/10m"`; null, `"none"` or `"off"` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub rate_limit: Option<Option<String>>,
    /// At most this many active documents with one key (1 to 10,000), across
    /// every worker; null removes the cap.
    #[serde(default, deserialize_with = "present_int")]
    #[schema(value_type = Option<i64>, nullable)]
    pub key_concurrency: Option<Option<i64>>,
    /// What happens to completed documents: `"keep"` (or null) keeps them,
    /// `"at-once"` deletes them at completion, a duration such as `"7d"`
    /// deletes them that long after completion (maintenance, in batches).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub completed_retention: Option<Option<String>>,
}

/// [`present`] for a number.
fn present_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// A field that is present, null or not: `Some(None)` for null, where a
/// missing field stays `None` (its `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// What a `rate_limit` field asks for: `Some(None)` to remove the limit.
fn rate_limit(field: Option<Option<String>>) -> Result<Option<Option<RateLimit>>, ApiError> {
    let Some(field) = field else { return Ok(None) };
    match field.as_deref().map(str::trim) {
        None | Some("none" | "off") => Ok(Some(None)),
        Some(text) => text
            .parse::<RateLimit>()
            .map(|r| Some(Some(r)))
            .map_err(|e| ApiError::bad_request(format!("rate_limit: {e}"))),
    }
}

/// What a `completed_retention` field asks for: null is keep.
fn completed_retention(field: Option<Option<String>>) -> Result<Option<Retention>, ApiError> {
    let Some(field) = field else { return Ok(None) };
    match field {
        None => Ok(Some(Retention::Keep)),
        Some(text) => text
            .parse::<Retention>()
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("completed_retention: {e}"))),
    }
}

fn int(v: i64, what: &str, min: i64) -> Result<i32, ApiError> {
    i32::try_from(v)
        .ok()
        .filter(|v| i64::from(*v) >= min)
        .ok_or_else(|| {
            ApiError::bad_request(format!("{what} must be {min} to 2147483647, got {v}"))
        })
}

/// Changes settings of a queue; answers the queue as it is now.
#[utoipa::path(patch, path = "/api/v1/queues/{queue}", tag = "queues", security(("bearer" = ["admin"])), request_body = PatchQueue,
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = QueueView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn patch(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<PatchQueue>,
) -> Result<Json<QueueView>, ApiError> {
    // check everything before changing anything
    let max_attempts = body
        .max_attempts
        .map(|v| int(v, "max_attempts", 1))
        .transpose()?;
    let current_version = body
        .current_version
        .map(|v| int(v, "current_version", 0))
        .transpose()?;
    let max_payload_size = body
        .max_payload_size
        .map(|v| int(v, "max_payload_size", 1))
        .transpose()?;
    let retention = body
        .logs_retention
        .as_deref()
        .map(|d| duration(d, "logs_retention"))
        .transpose()?;
    let retry_delay = body
        .retry_delay
        .as_deref()
        .map(|d| duration(d, "retry_delay"))
        .transpose()?;
    let retry_delay_max = body
        .retry_delay_max
        .as_deref()
        .map(|d| duration(d, "retry_delay_max"))
        .transpose()?;
    let rate = rate_limit(body.rate_limit)?;
    let completed = completed_retention(body.completed_retention)?;
    let key_cap = match body.key_concurrency {
        None => None,
        Some(None) => Some(None),
        Some(Some(n)) if (1..=10_000).contains(&n) => Some(Some(int(n, "key_concurrency", 1)?)),
        Some(Some(n)) => {
            return Err(ApiError::bad_request(format!(
                "key_concurrency must be 1 to 10000, got {n}"
            )));
        }
    };
    if let Some(j) = body.retry_jitter
        && !(0.0..=1.0).contains(&j)
    {
        return Err(ApiError::bad_request(format!(
            "retry_jitter must be 0 to 1, got {j}"
        )));
    }
    let c = &state.client;
    let before = c.queue_status(&queue).await?;
    if let Some(v) = max_attempts {
        c.queue_set_max_attempts(&queue, v).await?;
    }
    if let Some(v) = current_version {
        c.queue_set_current_version(&queue, v).await?;
    }
    if let Some(v) = max_payload_size {
        c.queue_set_max_payload_size(&queue, v).await?;
    }
    if let Some(v) = retention {
        c.queue_set_logs_retention(&queue, v).await?;
    }
    if retry_delay.is_some() || retry_delay_max.is_some() || body.retry_jitter.is_some() {
        c.queue_set_retry_backoff(
            &queue,
            retry_delay.unwrap_or(before.retry_delay),
            retry_delay_max.unwrap_or(before.retry_delay_max),
            body.retry_jitter.unwrap_or(before.retry_jitter),
        )
        .await?;
    }
    if let Some(rate) = rate {
        c.queue_set_rate_limit(&queue, rate).await?;
    }
    if let Some(cap) = key_cap {
        c.queue_set_key_concurrency(&queue, cap).await?;
    }
    if let Some(r) = completed {
        c.queue_set_completed_retention(&queue, r).await?;
    }
    let info = c.queue_status(&queue).await?;
    Ok(Json(view(c, info).await?))
}

/// Drops a queue and all its documents: 204, or 404 when it did not exist.
#[utoipa::path(delete, path = "/api/v1/queues/{queue}", tag = "queues", security(("bearer" = ["admin"])),
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn drop_queue(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
) -> Result<StatusCode, ApiError> {
    if state.client.queue_drop(&queue).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            fetchq_core::codes::QUEUE_NOT_FOUND,
            format!("queue {queue:?} does not exist"),
        ))
    }
}

/// The answer of pause and resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct Switched {
    /// The queue.
    pub name: String,
    /// Whether it is active now.
    pub is_active: bool,
    /// Whether this call changed it.
    pub changed: bool,
}

async fn switch(state: &AppState, queue: String, active: bool) -> Result<Json<Switched>, ApiError> {
    let changed = if active {
        state.client.queue_resume(&queue).await?
    } else {
        state.client.queue_pause(&queue).await?
    };
    // a missing queue is a 404, not "unchanged"
    let info = state.client.queue_status(&queue).await?;
    Ok(Json(Switched {
        name: queue,
        is_active: info.is_active,
        changed,
    }))
}

/// Pauses a queue: picks return nothing until resumed.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/pause", tag = "queues", security(("bearer" = ["admin"])),
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = Switched), (status = 404, body = ErrorBody)))]
pub async fn pause(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
) -> Result<Json<Switched>, ApiError> {
    switch(&state, queue, false).await
}

/// Resumes a paused queue.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/resume", tag = "queues", security(("bearer" = ["admin"])),
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = Switched), (status = 404, body = ErrorBody)))]
pub async fn resume(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
) -> Result<Json<Switched>, ApiError> {
    switch(&state, queue, true).await
}
