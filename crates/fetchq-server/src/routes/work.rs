//! Work: pick documents under a lease, resolve them, extend leases.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fetchq_core::{Client, Lease, PickOptions, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Authorized, need};
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::extract::{self, ApiJson, QueueName, check_subject};
use crate::state::AppState;

/// Most items in one resolve or extend call.
pub const MAX_ITEMS_PER_CALL: usize = 10_000;

/// `POST .../pick`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickIn {
    /// The version to pick (default 0).
    pub version: Option<i64>,
    /// 1 to 1000 documents (default 1).
    pub limit: Option<i64>,
    /// How long the lease lasts, e.g. `"30s"` (default `"5m"`).
    pub lease: Option<String>,
}

/// A picked document with its lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct Picked {
    /// Subject.
    pub subject: String,
    /// The fencing token: send it back to resolve or extend.
    pub lease_token: Uuid,
    /// When the lease runs out unless extended.
    pub lease_expires_at: DateTime<Utc>,
    /// JSON payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Version.
    pub version: i32,
    /// Priority.
    pub priority: i32,
    /// Failed attempts so far.
    pub attempts: i32,
    /// Times processed before.
    pub iterations: i64,
    /// When first queued.
    pub created_at: DateTime<Utc>,
    /// When last processed.
    pub last_iteration: Option<DateTime<Utc>>,
}

/// The picked documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct PickOut {
    /// Up to `limit` documents, by priority then due time.
    pub docs: Vec<Picked>,
    /// When nothing was leased: milliseconds until the next planned document
    /// of the version is due (0 when due now); null when none is planned.
    pub next_due_ms: Option<u64>,
    /// When the queue's rate limit held due documents back: milliseconds
    /// until its next slot opens. Picking again sooner leases nothing.
    pub rate_wait_ms: Option<u64>,
}

fn millis(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lease_duration(text: Option<&str>) -> Result<Duration, ApiError> {
    let d = match text {
        None => Duration::from_secs(300),
        Some(t) => extract::duration(t, "lease")?,
    };
    if d < Duration::from_millis(1) {
        return Err(ApiError::bad_request("lease must be positive"));
    }
    Ok(d)
}

/// Picks due documents under an exclusive lease.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/pick", tag = "work", security(("bearer" = ["work"])), request_body = PickIn,
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = PickOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn pick(
    _: Authorized<need::Work>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<PickIn>,
) -> Result<Json<PickOut>, ApiError> {
    let options = PickOptions::new()
        .version(extract::version(body.version)?.unwrap_or(0))
        .limit(extract::limit(body.limit, 1, 1000)?)
        .lease(lease_duration(body.lease.as_deref())?);
    let answer = state.client.pick_answer(&queue, &options).await?;
    Ok(Json(PickOut {
        next_due_ms: millis(answer.next_due),
        rate_wait_ms: millis(answer.rate_wait),
        docs: answer
            .docs
            .into_iter()
            .map(|d| Picked {
                subject: d.subject,
                lease_token: d.lease.token,
                lease_expires_at: d.lease.expires_at,
                payload: d.payload,
                version: d.version,
                priority: d.priority,
                attempts: d.attempts,
                iterations: d.iterations,
                created_at: d.created_at,
                last_iteration: d.last_iteration,
            })
            .collect(),
    }))
}

/// What to do with a picked document.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done for good.
    Complete,
    /// Done for now: due again at `next_iteration` / after `delay` (default now).
    Reschedule,
    /// Failed: retried with backoff until `max_attempts`; `message` is logged.
    Reject,
    /// Dead, never re-admitted.
    Kill,
    /// Deleted.
    Drop,
    /// Moved to `version`, due at `next_iteration` / after `delay` (default now).
    Migrate,
}

/// One resolution.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveItem {
    /// The document's subject.
    pub subject: String,
    /// The `lease_token` from the pick.
    pub lease_token: String,
    /// What happened.
    pub outcome: Outcome,
    /// RFC 3339 time (reschedule, migrate).
    pub next_iteration: Option<String>,
    /// Or a duration such as `"1h"` (reschedule, migrate).
    pub delay: Option<String>,
    /// New payload (complete, reschedule, kill, migrate).
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// Error message (reject).
    pub message: Option<String>,
    /// Structured error details (reject).
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    /// Who rejected it (reject).
    pub ref_id: Option<String>,
    /// Target version (migrate).
    pub version: Option<i64>,
}

/// `POST .../resolve`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveIn {
    /// 1 to 10,000 resolutions.
    pub results: Vec<ResolveItem>,
}

/// The result of one resolution.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    /// The subject.
    pub subject: String,
    /// `ok`, `lease_lost` (nothing changed) or `error`.
    pub status: String,
    /// What went wrong (`error` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Per-item results, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolveOut {
    /// One per item.
    pub results: Vec<ItemResult>,
    /// Set (with status 409) when every item lost its lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

enum Plan {
    Complete(Option<Value>),
    Reschedule(Schedule, Option<Value>),
    Reject(String, Option<Value>, Option<String>),
    Kill(Option<Value>),
    Drop,
    Migrate(i32, Schedule, Option<Value>),
}

fn plan(item: &ResolveItem) -> Result<(Lease, Plan), ApiError> {
    check_subject(&item.subject)?;
    let token = Uuid::parse_str(item.lease_token.trim())
        .map_err(|_| ApiError::bad_request("lease_token is not a UUID"))?;
    let lease = Lease {
        queue: String::new(),
        subject: item.subject.clone(),
        token,
        expires_at: Utc::now(),
    };
    let when = || {
        extract::schedule(
            item.next_iteration.as_deref(),
            item.delay.as_deref(),
            Schedule::Now,
        )
    };
    let timed = matches!(item.outcome, Outcome::Reschedule | Outcome::Migrate);
    if !timed && (item.next_iteration.is_some() || item.delay.is_some()) {
        return Err(ApiError::bad_request(
            "next_iteration and delay go with reschedule or migrate only",
        ));
    }
    let plan = match item.outcome {
        Outcome::Complete => Plan::Complete(item.payload.clone()),
        Outcome::Reschedule => Plan::Reschedule(when()?, item.payload.clone()),
        Outcome::Reject => Plan::Reject(
            item.message
                .clone()
                .unwrap_or_else(|| "rejected".to_owned()),
            item.details.clone(),
            item.ref_id.clone(),
        ),
        Outcome::Kill => Plan::Kill(item.payload.clone()),
        Outcome::Drop => Plan::Drop,
        Outcome::Migrate => {
            let v = extract::version(item.version)?
                .ok_or_else(|| ApiError::bad_request("migrate needs a version"))?;
            Plan::Migrate(v, when()?, item.payload.clone())
        }
    };
    Ok((lease, plan))
}

fn ok(subject: &str) -> ItemResult {
    ItemResult {
        subject: subject.to_owned(),
        status: "ok".into(),
        error: None,
    }
}

fn lost(subject: &str) -> ItemResult {
    ItemResult {
        subject: subject.to_owned(),
        status: "lease_lost".into(),
        error: None,
    }
}

/// A per-item result of a failed call; transient failures abort the request
/// (503), and so does a missing queue (404, as for every other endpoint).
fn item_error(subject: &str, e: fetchq_core::Error) -> Result<ItemResult, ApiError> {
    if matches!(e, fetchq_core::Error::LeaseLost { .. }) {
        return Ok(lost(subject));
    }
    let gone = matches!(e, fetchq_core::Error::QueueNotFound { .. });
    let api = ApiError::from(e);
    if api.status.is_server_error() || gone {
        return Err(api);
    }
    Ok(ItemResult {
        subject: subject.to_owned(),
        status: "error".into(),
        error: Some(ErrorDetail {
            code: api.code,
            message: api.message,
        }),
    })
}

async fn one(c: &Client, lease: &Lease, plan: &Plan) -> Result<ItemResult, ApiError> {
    let r = match plan {
        Plan::Complete(p) => c.complete(lease, p.as_ref()).await,
        Plan::Reschedule(w, p) => c.reschedule(lease, *w, p.as_ref()).await,
        Plan::Reject(m, d, r) => c.reject(lease, m, d.as_ref(), r.as_deref()).await,
        Plan::Kill(p) => c.kill(lease, p.as_ref()).await,
        Plan::Drop => c.drop_doc(lease).await,
        Plan::Migrate(v, w, p) => c.migrate_version(lease, *v, p.as_ref(), *w).await,
    };
    match r {
        Ok(()) => Ok(ok(&lease.subject)),
        Err(e) => item_error(&lease.subject, e),
    }
}

/// Resolves picked documents. Completions go in one statement and
/// reschedules in another; other outcomes one call each. Answers per item
/// in request order: `ok`, `lease_lost` (a stale token changes nothing) or
/// `error`. The status is 200 unless every item lost its lease (409, same
/// body plus `error`); a database outage is 503.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/resolve", tag = "work", security(("bearer" = ["work"])), request_body = ResolveIn,
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = ResolveOut), (status = 409, description = "every item lost its lease", body = ResolveOut),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn resolve(
    _: Authorized<need::Work>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<ResolveIn>,
) -> Result<Response, ApiError> {
    if body.results.len() > MAX_ITEMS_PER_CALL {
        return Err(ApiError::too_large(format!(
            "at most {MAX_ITEMS_PER_CALL} results a call"
        )));
    }
    let mut plans = Vec::with_capacity(body.results.len());
    for (i, item) in body.results.iter().enumerate() {
        let (mut lease, plan) = plan(item).map_err(|e| e.at(&format!("results[{i}]")))?;
        lease.queue.clone_from(&queue);
        plans.push((lease, plan));
    }
    let c = &state.client;
    if plans.is_empty() {
        // nothing to do, but an unknown queue is still a 404
        c.queue_status(&queue).await?;
    }
    let mut results: Vec<Option<ItemResult>> = (0..plans.len()).map(|_| None).collect();
    // the subjects sent twice in one call are resolved one by one
    let mut seen = HashSet::new();
    let dup: HashSet<&str> = plans
        .iter()
        .filter(|(l, _)| !seen.insert(l.subject.as_str()))
        .map(|(l, _)| l.subject.as_str())
        .collect();
    let batchable = |l: &Lease| !dup.contains(l.subject.as_str());

    let completes: Vec<usize> = (0..plans.len())
        .filter(|&i| matches!(plans[i].1, Plan::Complete(_)) && batchable(&plans[i].0))
        .collect();
    if !completes.is_empty() {
        let items: Vec<(Lease, Option<Value>)> = completes
            .iter()
            .map(|&i| match &plans[i].1 {
                Plan::Complete(p) => (plans[i].0.clone(), p.clone()),
                _ => (plans[i].0.clone(), None),
            })
            .collect();
        batch_outcome(
            c,
            &plans,
            &completes,
            &mut results,
            c.complete_many(&queue, &items).await,
        )
        .await?;
    }
    let reschedules: Vec<usize> = (0..plans.len())
        .filter(|&i| matches!(plans[i].1, Plan::Reschedule(..)) && batchable(&plans[i].0))
        .collect();
    if !reschedules.is_empty() {
        let items: Vec<(Lease, Schedule, Option<Value>)> = reschedules
            .iter()
            .map(|&i| match &plans[i].1 {
                Plan::Reschedule(w, p) => (plans[i].0.clone(), *w, p.clone()),
                _ => (plans[i].0.clone(), Schedule::Now, None),
            })
            .collect();
        batch_outcome(
            c,
            &plans,
            &reschedules,
            &mut results,
            c.reschedule_many(&queue, &items).await,
        )
        .await?;
    }
    for (i, (lease, plan)) in plans.iter().enumerate() {
        if results[i].is_none() {
            results[i] = Some(one(c, lease, plan).await?);
        }
    }
    let results: Vec<ItemResult> = results.into_iter().flatten().collect();
    let all_lost = !results.is_empty() && results.iter().all(|r| r.status == "lease_lost");
    if all_lost {
        let body = ResolveOut {
            results,
            error: Some(ErrorDetail {
                code: "lease_lost".into(),
                message: "every lease was lost: nothing was changed".into(),
            }),
        };
        return Ok((StatusCode::CONFLICT, Json(body)).into_response());
    }
    Ok(Json(ResolveOut {
        results,
        error: None,
    })
    .into_response())
}

/// Records the outcome of a batched call: the subjects it returned are `ok`,
/// the others `lease_lost`. When the whole statement failed for a reason of
/// its own (a payload too large...), the items are retried one by one so
/// each gets its own answer.
async fn batch_outcome(
    c: &Client,
    plans: &[(Lease, Plan)],
    idx: &[usize],
    results: &mut [Option<ItemResult>],
    outcome: fetchq_core::Result<Vec<String>>,
) -> Result<(), ApiError> {
    match outcome {
        Ok(done) => {
            let done: HashSet<String> = done.into_iter().collect();
            for &i in idx {
                let s = &plans[i].0.subject;
                results[i] = Some(if done.contains(s) { ok(s) } else { lost(s) });
            }
        }
        Err(e) if e.is_transient() || matches!(e, fetchq_core::Error::QueueNotFound { .. }) => {
            return Err(e.into());
        }
        Err(_) => {
            for &i in idx {
                results[i] = Some(one(c, &plans[i].0, &plans[i].1).await?);
            }
        }
    }
    Ok(())
}

/// One lease to extend.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseIn {
    /// Subject.
    pub subject: String,
    /// The token from the pick.
    pub lease_token: String,
}

/// `POST .../extend`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendIn {
    /// The leases to extend (1 to 10,000).
    pub leases: Vec<LeaseIn>,
    /// The new lease length from now, e.g. `"5m"` (default `"5m"`).
    pub lease: Option<String>,
}

/// Which leases were extended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtendOut {
    /// Extended, in request order.
    pub extended: Vec<String>,
    /// Lost (expired and re-picked, or resolved), in request order.
    pub lost: Vec<String>,
}

/// Heartbeat: extends leases still held. 200, or 409 when every one was lost.
#[utoipa::path(post, path = "/api/v1/queues/{queue}/extend", tag = "work", security(("bearer" = ["work"])), request_body = ExtendIn,
    params(("queue" = String, Path, description = "queue name")),
    responses((status = 200, body = ExtendOut), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn extend(
    _: Authorized<need::Work>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<ExtendIn>,
) -> Result<Json<ExtendOut>, ApiError> {
    if body.leases.len() > MAX_ITEMS_PER_CALL {
        return Err(ApiError::too_large(format!(
            "at most {MAX_ITEMS_PER_CALL} leases a call"
        )));
    }
    let duration = lease_duration(body.lease.as_deref())?;
    let mut leases = Vec::with_capacity(body.leases.len());
    for (i, l) in body.leases.iter().enumerate() {
        let at = format!("leases[{i}]");
        check_subject(&l.subject).map_err(|e| e.at(&at))?;
        let token = Uuid::parse_str(l.lease_token.trim())
            .map_err(|_| ApiError::bad_request("lease_token is not a UUID").at(&at))?;
        leases.push(Lease {
            queue: queue.clone(),
            subject: l.subject.clone(),
            token,
            expires_at: Utc::now(),
        });
    }
    let held: HashSet<String> = state
        .client
        .extend_leases(&queue, &leases, duration)
        .await?
        .into_iter()
        .collect();
    let (extended, lost): (Vec<_>, Vec<_>) = leases
        .into_iter()
        .map(|l| l.subject)
        .partition(|s| held.contains(s));
    if extended.is_empty() && !lost.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lease_lost",
            format!("every lease was lost ({} of them)", lost.len()),
        ));
    }
    Ok(Json(ExtendOut { extended, lost }))
}
