//! An operator's actions on documents without their lease, one or in bulk.

use axum::Json;
use axum::extract::State;
use fetchq_core::{BulkAction, Schedule};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authorized, need};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, ApiJson, QueueName, QueueSubject, check_subject};
use crate::routes::docs::filter;
use crate::state::AppState;

/// The answer of a single action.
#[derive(Debug, Serialize, ToSchema)]
pub struct Acted {
    /// The subject.
    pub subject: String,
    /// `play`, `kill`, `reschedule` or `drop`.
    pub action: String,
}

fn acted(subject: String, action: &str) -> Json<Acted> {
    Json(Acted {
        subject,
        action: action.to_owned(),
    })
}

/// Makes a document due now with its attempts reset (takes it from its worker if leased).
#[utoipa::path(post, path = "/api/v1/queues/{queue}/docs/{subject}/play", tag = "admin", security(("bearer" = ["admin"])),
    params(("queue" = String, Path, description = "queue name"), ("subject" = String, Path, description = "subject")),
    responses((status = 200, body = Acted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn play(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueSubject(queue, subject): QueueSubject,
) -> Result<Json<Acted>, ApiError> {
    state.client.play(&queue, &subject).await?;
    Ok(acted(subject, "play"))
}

/// Kills a document (dead, never re-admitted).
#[utoipa::path(post, path = "/api/v1/queues/{queue}/docs/{subject}/kill", tag = "admin", security(("bearer" = ["admin"])),
    params(("queue" = String, Path, description = "queue name"), ("subject" = String, Path, description = "subject")),
    responses((status = 200, body = Acted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn kill(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueSubject(queue, subject): QueueSubject,
) -> Result<Json<Acted>, ApiError> {
    state.client.force_kill(&queue, &subject).await?;
    Ok(acted(subject, "kill"))
}

/// When to plan a document.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// RFC 3339 time.
    pub next_iteration: Option<String>,
    /// Or a duration from now, e.g. `"1h"`.
    pub delay: Option<String>,
}

/// Plans a document at a time, attempts reset.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/docs/{subject}/reschedule", tag = "admin", security(("bearer" = ["admin"])),
    request_body = When,
    params(("queue" = String, Path, description = "queue name"), ("subject" = String, Path, description = "subject")),
    responses((status = 200, body = Acted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn reschedule(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueSubject(queue, subject): QueueSubject,
    ApiJson(when): ApiJson<When>,
) -> Result<Json<Acted>, ApiError> {
    let when = required_schedule(&when)?;
    state
        .client
        .force_reschedule(&queue, &subject, when)
        .await?;
    Ok(acted(subject, "reschedule"))
}

fn required_schedule(when: &When) -> Result<Schedule, ApiError> {
    if when.next_iteration.is_none() && when.delay.is_none() {
        return Err(ApiError::bad_request("give next_iteration or delay"));
    }
    extract::schedule(
        when.next_iteration.as_deref(),
        when.delay.as_deref(),
        Schedule::Now,
    )
}

/// Deletes a document, whatever its status.
#[utoipa::path(delete, path = "/api/v1/queues/{queue}/docs/{subject}", tag = "admin", security(("bearer" = ["admin"])),
    params(("queue" = String, Path, description = "queue name"), ("subject" = String, Path, description = "subject")),
    responses((status = 200, body = Acted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueSubject(queue, subject): QueueSubject,
) -> Result<Json<Acted>, ApiError> {
    state.client.force_drop(&queue, &subject).await?;
    Ok(acted(subject, "drop"))
}

/// Which documents a bulk action covers; every field left out matches all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterIn {
    /// `pending`, `planned`, `active`, `completed` or `dead`.
    pub status: Option<String>,
    /// Only this version.
    pub version: Option<i64>,
    /// Only subjects starting with this text.
    pub subject_prefix: Option<String>,
}

/// The bulk actions.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkKind {
    /// Due now, attempts reset.
    Play,
    /// Dead.
    Kill,
    /// Planned at `next_iteration` / after `delay`.
    Reschedule,
    /// Deleted.
    Drop,
}

/// `POST .../docs:bulk`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkIn {
    /// Which documents (required; `{}` means every document).
    pub filter: FilterIn,
    /// What to do.
    pub action: BulkKind,
    /// RFC 3339 time (reschedule).
    pub next_iteration: Option<String>,
    /// Or a duration from now (reschedule).
    pub delay: Option<String>,
    /// Documents per transaction, 1 to 10,000 (default 1,000).
    pub batch: Option<i64>,
    /// Go on after this subject: the `next_after` of the previous answer.
    pub after: Option<String>,
}

/// How many documents changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkOut {
    /// Documents changed by this call.
    pub changed: u64,
    /// True when every matching document was visited. A call works for at
    /// most half the request timeout; when it stops early, `done` is false
    /// and the same request with `"after": next_after` goes on.
    pub done: bool,
    /// Where to go on from when `done` is false.
    pub next_after: Option<String>,
}

/// Applies an action to every document matching a filter, in short batches.
/// A call works for at most half the request timeout: when `done` is false,
/// send the same request again with `"after": next_after` to go on.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/docs:bulk", tag = "admin", security(("bearer" = ["admin"])),
    request_body = BulkIn,
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = BulkOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn bulk(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<BulkIn>,
) -> Result<Json<BulkOut>, ApiError> {
    let f = filter(
        body.filter.status.as_deref(),
        body.filter.version,
        body.filter.subject_prefix.as_deref(),
    )?;
    let when = When {
        next_iteration: body.next_iteration,
        delay: body.delay,
    };
    let action = match body.action {
        BulkKind::Reschedule => BulkAction::Reschedule(required_schedule(&when)?),
        other => {
            if when.next_iteration.is_some() || when.delay.is_some() {
                return Err(ApiError::bad_request(
                    "next_iteration and delay go with reschedule only",
                ));
            }
            match other {
                BulkKind::Play => BulkAction::Play,
                BulkKind::Kill => BulkAction::Kill,
                _ => BulkAction::Drop,
            }
        }
    };
    let batch = extract::limit(body.batch, 1000, 10_000)
        .map_err(|_| ApiError::bad_request("batch must be 1 to 10000"))?;
    if let Some(after) = &body.after {
        check_subject(after)?;
    }
    let deadline = std::time::Instant::now() + state.bulk_budget;
    let progress = state
        .client
        .bulk_from(
            &queue,
            &f,
            action,
            batch,
            body.after.as_deref(),
            Some(deadline),
        )
        .await?;
    Ok(Json(BulkOut {
        changed: progress.changed,
        done: progress.is_done(),
        next_after: progress.next_after,
    }))
}
