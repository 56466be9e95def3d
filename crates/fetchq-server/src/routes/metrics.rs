//! `GET /metrics`: every queue's counters, lag, state and timers in the
//! Prometheus text exposition format (version 0.0.4), read in one call
//! ([`fetchq_core::Client::metric_export`], O(queues), never O(documents)).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use fetchq_core::{ExportedValue, timers_from_export};

use crate::auth::{Authorized, need};
use crate::error::ApiError;
use crate::state::AppState;

/// The content type of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `fetchq_documents{status}`: the status label and the engine counter of it.
const DOCUMENTS: [(&str, &str); 5] = [
    ("planned", "pln"),
    ("pending", "pnd"),
    ("active", "act"),
    ("completed", "cpl"),
    ("dead", "kll"),
];

/// `fetchq_events_total{event}`: the event label and the engine counter of it.
const EVENTS: [(&str, &str); 8] = [
    ("entered", "ent"),
    ("picked", "pkd"),
    ("processed", "prc"),
    ("rescheduled", "res"),
    ("rejected", "rej"),
    ("orphaned", "orp"),
    ("killed", "kld"),
    ("dropped", "drp"),
];

/// Engine counters that are not custom metrics (the ones above, `cnt`, `err`
/// and the per-version `v<N>`).
fn is_engine_counter(metric: &str) -> bool {
    DOCUMENTS.iter().any(|(_, m)| *m == metric)
        || EVENTS.iter().any(|(_, m)| *m == metric)
        || metric == "cnt"
        || metric == "err"
        || metric.starts_with("~t/")
        || metric
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A label value escaped per the text format: backslash, double quote and
/// line feed become `\\`, `\"` and `\n`.
///
/// ```
/// use fetchq_server::routes::metrics::escape_label_value;
/// assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
/// ```
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the text format writes it (`+Inf`, `-Inf`, `NaN`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// What one queue exports.
#[derive(Default)]
struct QueueValues {
    counters: BTreeMap<String, f64>,
    state: BTreeMap<String, f64>,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), number(value));
}

/// Renders the exporter's values in the text format, one family after the
/// other, queues in name order. Queues are those with state rows (every
/// existing queue has them); a standard counter never written reads 0.
pub fn render(values: &[ExportedValue]) -> String {
    let mut queues: BTreeMap<&str, QueueValues> = BTreeMap::new();
    for v in values {
        if !v.counter {
            queues.entry(&v.queue).or_default();
        }
    }
    for v in values {
        if let Some(q) = queues.get_mut(v.queue.as_str()) {
            let map = if v.counter {
                &mut q.counters
            } else {
                &mut q.state
            };
            map.insert(v.metric.clone(), v.value);
        }
    }
    let counter = |q: &QueueValues, m: &str| q.counters.get(m).copied().unwrap_or(0.0);
    let state = |q: &QueueValues, m: &str| q.state.get(m).copied().unwrap_or(0.0);
    let mut out = String::new();

    family(
        &mut out,
        "fetchq_documents",
        "gauge",
        "Documents in the queue by status (engine counters pln, pnd, act, cpl, kll).",
    );
    for (queue, q) in &queues {
        for (status, m) in DOCUMENTS {
            sample(
                &mut out,
                "fetchq_documents",
                &[("queue", queue), ("status", status)],
                counter(q, m),
            );
        }
    }
    family(
        &mut out,
        "fetchq_events_total",
        "counter",
        "Document events since the queue was created (engine counters ent, pkd, prc, res, rej, orp, kld, drp).",
    );
    for (queue, q) in &queues {
        for (event, m) in EVENTS {
            sample(
                &mut out,
                "fetchq_events_total",
                &[("queue", queue), ("event", event)],
                counter(q, m),
            );
        }
    }
    let gauges = [
        (
            "fetchq_queue_lag_seconds",
            "lag_seconds",
            "How late the oldest due document is, in seconds (0 when none is due).",
        ),
        (
            "fetchq_queue_paused",
            "paused",
            "1 when the queue is paused (picks return nothing), else 0.",
        ),
        (
            "fetchq_queue_current_version",
            "current_version",
            "The queue's current document version.",
        ),
        (
            "fetchq_queue_error_log_rows",
            "error_log_rows",
            "Rows in the queue's error log (the span of its ids: never a count).",
        ),
    ];
    for (name, m, help) in gauges {
        family(&mut out, name, "gauge", help);
        for (queue, q) in &queues {
            sample(&mut out, name, &[("queue", queue)], state(q, m));
        }
    }
    family(
        &mut out,
        "fetchq_custom",
        "gauge",
        "The queue's own metrics (metric_log_increment, metric_log_set), by name.",
    );
    for (queue, q) in &queues {
        for (m, v) in &q.counters {
            if !is_engine_counter(m) {
                sample(
                    &mut out,
                    "fetchq_custom",
                    &[("queue", queue), ("metric", m)],
                    *v,
                );
            }
        }
    }
    family(
        &mut out,
        "fetchq_timer_seconds",
        "histogram",
        "The queue's timers (ctx.time, metric_time), in seconds, by name.",
    );
    for t in timers_from_export(values) {
        if !queues.contains_key(t.queue.as_str()) {
            continue;
        }
        let labels = [("queue", t.queue.as_str()), ("timer", t.name.as_str())];
        for (le_ms, count) in &t.buckets {
            let le = number(le_ms / 1000.0);
            sample(
                &mut out,
                "fetchq_timer_seconds_bucket",
                &[labels[0], labels[1], ("le", &le)],
                *count as f64,
            );
        }
        sample(
            &mut out,
            "fetchq_timer_seconds_sum",
            &labels,
            t.sum_ms / 1000.0,
        );
        sample(
            &mut out,
            "fetchq_timer_seconds_count",
            &labels,
            t.count as f64,
        );
    }
    out
}

/// Every queue's documents by status, event counters, lag, paused flag,
/// version, error-log rows and custom metrics in the Prometheus text format
/// 0.0.4. Counters are exact at read (no pack needed). Needs a `read` token
/// unless the server runs with `--metrics-public`.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(("bearer" = ["read"]), ()),
    responses((status = 200, description = "the Prometheus text exposition format 0.0.4",
                content_type = "text/plain; version=0.0.4", body = String),
               (status = 401, description = "missing or unknown token (unless metrics are public)", body = crate::error::ErrorBody),
               (status = 403, description = "the token lacks the read scope", body = crate::error::ErrorBody),
               (status = 503, description = "the database is unreachable", body = crate::error::ErrorBody)))]
pub async fn metrics(
    auth: Result<Authorized<need::Read>, ApiError>,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    if !state.metrics_public {
        auth?;
    }
    let values = state.client.metric_export().await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&values)).into_response())
}
