//! Cron schedules: list, set (create or change), drop. A schedule pushes, or
//! makes due again, one document on a calendar; the workers' maintenance
//! leader fires it (see `fetchq_core::CronSchedule`). Reading needs `read`,
//! changing needs `admin`, like the queues' settings: a schedule writes
//! documents into a queue on its own, which is configuration, not a push.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use fetchq_core::{CronSchedule, ScheduleInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Authorized, need};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The `{name}` path segment, validated as a schedule name (400 `FQ004`).
#[derive(Debug)]
pub struct ScheduleName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ScheduleName {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(params) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|e: PathRejection| ApiError::from(e))?;
        let name = params
            .into_iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v)
            .ok_or_else(|| ApiError::bad_request("missing schedule name in the path"))?;
        fetchq_core::validate_schedule_name(&name)?;
        Ok(Self(name))
    }
}

/// A schedule: what it fires, when, and how it went.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    /// Name.
    pub name: String,
    /// The cron expression (5 fields, 6 with seconds first, or `@daily`-style).
    pub cron: String,
    /// The IANA time zone it is read in.
    pub time_zone: String,
    /// The document's queue.
    pub queue: String,
    /// The document's subject.
    pub subject: String,
    /// The document's payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The document's version when a tick pushes it.
    pub version: i32,
    /// The document's priority.
    pub priority: i32,
    /// The next tick; null until the workers' maintenance planned it.
    pub next_tick_at: Option<DateTime<Utc>>,
    /// The last tick fired.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// Ticks fired.
    pub ticks: i64,
    /// Ticks missed while no worker ran, collapsed into a later one.
    pub ticks_collapsed: i64,
    /// Ticks skipped because the document was still running.
    pub ticks_skipped: i64,
    /// Why it could not be planned or fired the last time.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

impl From<ScheduleInfo> for ScheduleView {
    fn from(s: ScheduleInfo) -> Self {
        Self {
            name: s.name,
            cron: s.cron,
            time_zone: s.time_zone,
            queue: s.queue,
            subject: s.subject,
            payload: s.payload,
            version: s.version,
            priority: s.priority,
            next_tick_at: s.next_tick_at,
            last_tick_at: s.last_tick_at,
            ticks: s.ticks,
            ticks_collapsed: s.ticks_collapsed,
            ticks_skipped: s.ticks_skipped,
            last_error: s.last_error,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Every schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    /// The schedules, by name.
    pub schedules: Vec<ScheduleView>,
}

/// Every schedule, by name.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", security(("bearer" = ["read"])),
    responses((status = 200, body = ScheduleList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn list(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = state
        .client
        .schedule_list()
        .await?
        .into_iter()
        .map(ScheduleView::from)
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// `PUT /api/v1/schedules/{name}`: the whole schedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSchedule {
    /// Cron expression: 5 fields (minute hour day month weekday), 6 with
    /// seconds first, or `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`.
    pub cron: String,
    /// IANA time zone, default `UTC`.
    pub time_zone: Option<String>,
    /// The document's queue (it must exist).
    pub queue: String,
    /// The document's subject; default the schedule's name.
    pub subject: Option<String>,
    /// The document's payload; default `{}`.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// The document's version when a tick pushes it; default 0.
    pub version: Option<i32>,
    /// The document's priority; default 0.
    pub priority: Option<i32>,
}

/// Creates (201) or changes (200) a schedule. A new expression or zone
/// replans it (`next_tick_at` null until the workers' maintenance plans it);
/// any other change keeps the planned tick. 400 `FQ004` for a bad
/// expression, time zone or name, 404 for an unknown queue.
#[utoipa::path(put, path = "/api/v1/schedules/{name}", tag = "schedules", security(("bearer" = ["admin"])),
    request_body = SetSchedule,
    params(("name" = String, Path, description = "schedule name: 1 to 100 of A-Z a-z 0-9 _ . : -")),
    responses((status = 201, body = ScheduleView), (status = 200, body = ScheduleView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    ScheduleName(name): ScheduleName,
    ApiJson(body): ApiJson<SetSchedule>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let mut s = CronSchedule::new(name.clone(), body.cron)
        .queue(body.queue)
        .version(body.version.unwrap_or(0))
        .priority(body.priority.unwrap_or(0));
    if let Some(tz) = body.time_zone {
        s = s.time_zone(tz);
    }
    if let Some(subject) = body.subject {
        s = s.subject(subject);
    }
    if let Some(payload) = body.payload {
        s = s.payload(payload);
    }
    let set = state.client.schedule_set(&s).await?;
    let view = state
        .client
        .schedule_list()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .map(ScheduleView::from)
        // dropped (or its queue dropped) between the set and the read
        .ok_or_else(|| ApiError::not_found(format!("schedule {name:?} does not exist")))?;
    let status = if set.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Deletes a schedule (the document it fired stays): 204, or 404.
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", tag = "schedules", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn drop_schedule(
    _: Authorized<need::Admin>,
    State(state): State<AppState>,
    ScheduleName(name): ScheduleName,
) -> Result<StatusCode, ApiError> {
    if state.client.schedule_drop(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "schedule {name:?} does not exist"
        )))
    }
}
