//! The error log and the metrics of a queue.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use fetchq_core::{LogEntry, MetricPoint};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authorized, need};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, ApiQuery, QueueName, check_subject};
use crate::routes::queues::CountersView;
use crate::state::AppState;

/// One error log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogView {
    /// Increasing id: page with `before`.
    pub id: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// The document.
    pub subject: String,
    /// The message.
    pub message: String,
    /// Structured details.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    /// The writer's reference.
    pub ref_id: Option<String>,
}

impl From<LogEntry> for LogView {
    fn from(l: LogEntry) -> Self {
        Self {
            id: l.id,
            created_at: l.created_at,
            subject: l.subject,
            message: l.message,
            details: l.details,
            ref_id: l.ref_id,
        }
    }
}

/// Filters and paging of `GET .../logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListLogs {
    /// Only this document's entries.
    pub subject: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Only entries with an id below this (the `next_before` of the previous page).
    pub before: Option<i64>,
}

/// A page of log entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// Entries.
    pub logs: Vec<LogView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The error log of a queue, newest first.
#[utoipa::path(get, path = "/api/v1/queues/{queue}/logs", tag = "inspect", security(("bearer" = ["read"])),
    params(("queue" = String, Path, description = "queue name"), ListLogs),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn logs(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<ListLogs>,
) -> Result<Json<LogPage>, ApiError> {
    let limit = extract::limit(q.limit, 100, 1000)?;
    if let Some(s) = &q.subject {
        check_subject(s)?;
    }
    let logs = state
        .client
        .log_list(&queue, q.subject.as_deref(), q.before, limit)
        .await?;
    let next_before = (logs.len() == limit as usize)
        .then(|| logs.last().map(|l| l.id))
        .flatten();
    Ok(Json(LogPage {
        logs: logs.into_iter().map(LogView::from).collect(),
        next_before,
    }))
}

/// `GET .../metrics` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Also the snapshots taken since: an RFC 3339 time, or a duration ago such as `"1h"`.
    pub since: Option<String>,
    /// Most snapshots, 1 to 10000 (default 1000).
    pub limit: Option<i64>,
}

/// One metric snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct PointView {
    /// The metric (`cnt`, `pnd`, `prc`...).
    pub metric: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// The value then.
    pub value: i64,
}

impl From<MetricPoint> for PointView {
    fn from(p: MetricPoint) -> Self {
        Self {
            metric: p.metric,
            created_at: p.created_at,
            value: p.value,
        }
    }
}

/// Counters now (exact: the counter writes not packed yet are added), and
/// the snapshot history when `since` is given.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsOut {
    /// The counters now.
    pub counters: CountersView,
    /// Snapshots since `since`, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<PointView>>,
    /// The queue's timers (`ctx.time`, `Client::metric_time`, SQL
    /// `fetchq.metric_time`), exact at read, by name.
    pub timers: Vec<TimerView>,
}

/// A timer: how many times were recorded, their sum and the histogram.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimerView {
    /// The timer's name.
    pub name: String,
    /// How many times were recorded.
    pub count: u64,
    /// Their sum, in milliseconds.
    pub sum_ms: f64,
    /// Cumulative buckets: how many times were at most `le_ms` milliseconds
    /// (the last bucket has `le_ms` null: +Inf, its count is `count`).
    pub buckets: Vec<BucketView>,
}

/// One cumulative histogram bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketView {
    /// The upper bound in milliseconds; null for +Inf.
    pub le_ms: Option<f64>,
    /// How many times were at most that.
    pub count: u64,
}

impl From<fetchq_core::Timer> for TimerView {
    fn from(t: fetchq_core::Timer) -> Self {
        Self {
            name: t.name,
            count: t.count,
            sum_ms: t.sum_ms,
            buckets: t
                .buckets
                .into_iter()
                .map(|(le, count)| BucketView {
                    le_ms: le.is_finite().then_some(le),
                    count,
                })
                .collect(),
        }
    }
}

/// The counters and timers of a queue (exact at read: the counter writes not
/// packed yet are added, nothing is packed), and the counters' history.
#[utoipa::path(get, path = "/api/v1/queues/{queue}/metrics", tag = "inspect", security(("bearer" = ["read"])),
    params(("queue" = String, Path, description = "queue name"), MetricsQuery),
    responses((status = 200, body = MetricsOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn metrics(
    _: Authorized<need::Read>,
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> Result<Json<MetricsOut>, ApiError> {
    let limit = extract::limit(q.limit, 1000, 10_000)?;
    let since = match q.since.as_deref() {
        None => None,
        Some(s) => Some(match extract::time(s, "since") {
            Ok(t) => t,
            Err(_) => {
                let ago = extract::duration(s, "since (an RFC 3339 time or a duration ago)")?;
                let ago = chrono::Duration::from_std(ago)
                    .map_err(|_| ApiError::bad_request("since: too long ago"))?;
                Utc::now() - ago
            }
        }),
    };
    // a missing queue is a 404 even where the counters would read as zeros
    state.client.queue_status(&queue).await?;
    let counters = state.client.metric_get_common(&queue).await?;
    let timers = state.client.timer_list(Some(&queue)).await?;
    let history = match since {
        None => None,
        Some(t) => Some(
            state
                .client
                .metric_history(&queue, t, limit)
                .await?
                .into_iter()
                .map(PointView::from)
                .collect(),
        ),
    };
    Ok(Json(MetricsOut {
        counters: counters.into(),
        history,
        timers: timers.into_iter().map(TimerView::from).collect(),
    }))
}
