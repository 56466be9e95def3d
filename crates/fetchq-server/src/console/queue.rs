//! A queue's page: counts, throughput and status charts from the metric
//! snapshots, settings, pause/resume, and the error log.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use fetchq_core::{Counters, Error, LogEntry, MetricPoint, QueueInfo};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::Scope;
use crate::console::chart::{Series, line_chart, share_bar};
use crate::console::layout::{self, count, encode, span, when};
use crate::console::session::Viewer;
use crate::extract::format_duration;
use crate::state::AppState;

/// `?range=1h|6h|24h&before=LOG_ID`.
#[derive(Debug, Deserialize)]
pub(crate) struct QueuePageQuery {
    range: Option<String>,
    before: Option<i64>,
}

const RANGES: [(&str, i64); 4] = [
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 86400),
    ("7d", 7 * 86400),
];
const EVENTS: [(&str, &str); 5] = [
    ("entered", "ent"),
    ("processed", "prc"),
    ("rescheduled", "res"),
    ("rejected", "rej"),
    ("orphaned", "orp"),
];
const STATUSES: [(&str, &str); 5] = [
    ("pending", "pnd"),
    ("planned", "pln"),
    ("active", "act"),
    ("completed", "cpl"),
    ("dead", "kll"),
];

/// The current value of an engine counter by its short name.
fn counter(c: &Counters, m: &str) -> i64 {
    match m {
        "ent" => c.entered,
        "prc" => c.processed,
        "res" => c.rescheduled,
        "rej" => c.rejected,
        "orp" => c.orphans,
        "pnd" => c.pending,
        "pln" => c.planned,
        "act" => c.active,
        "cpl" => c.completed,
        "kll" => c.dead,
        _ => 0,
    }
}

/// Per metric, its snapshots in time order, ending with the exact value now.
fn by_metric(
    points: &[MetricPoint],
    c: &Counters,
    now: DateTime<Utc>,
    names: &[(&str, &str)],
) -> BTreeMap<String, Vec<(DateTime<Utc>, f64)>> {
    let mut out: BTreeMap<String, Vec<(DateTime<Utc>, f64)>> = BTreeMap::new();
    for p in points {
        if names.iter().any(|(_, m)| *m == p.metric) {
            out.entry(p.metric.clone())
                .or_default()
                .push((p.created_at, p.value as f64));
        }
    }
    for (_, m) in names {
        out.entry((*m).to_owned())
            .or_default()
            .push((now, counter(c, m) as f64));
    }
    out
}

/// Readings closer than this are one point of a chart (snapshots taken by
/// hand right after one another would draw as spikes).
const MIN_STEP_MS: i64 = 30_000;

/// Events per minute between readings at least [`MIN_STEP_MS`] apart (a
/// counter reset gives no point).
fn rates(readings: &[(DateTime<Utc>, f64)]) -> Vec<(DateTime<Utc>, f64)> {
    let mut out = Vec::new();
    let Some(mut anchor) = readings.first().copied() else {
        return out;
    };
    for r in &readings[1..] {
        let ms = (r.0 - anchor.0).num_milliseconds();
        if ms < MIN_STEP_MS {
            continue;
        }
        let dv = r.1 - anchor.1;
        if dv >= 0.0 {
            out.push((r.0, dv / (ms as f64 / 60_000.0)));
        }
        anchor = *r;
    }
    out
}

/// The last reading of each run of readings less than [`MIN_STEP_MS`] apart.
fn thin(readings: &[(DateTime<Utc>, f64)]) -> Vec<(DateTime<Utc>, f64)> {
    let mut out: Vec<(DateTime<Utc>, f64)> = Vec::new();
    for r in readings {
        let n = out.len();
        match out.last_mut() {
            Some(last) if n > 1 && (r.0 - last.0).num_milliseconds() < MIN_STEP_MS => *last = *r,
            _ => out.push(*r),
        }
    }
    out
}

struct Data {
    info: QueueInfo,
    counters: Counters,
    lag: f64,
    history: Vec<MetricPoint>,
    logs: Vec<LogEntry>,
}

/// Most snapshot rows read for a chart (each snapshot is a row per metric).
const MAX_HISTORY_ROWS: usize = 200_000;
const HISTORY_PAGE: i32 = 10_000;

/// The snapshots of the charted metrics since `since`, oldest first: read in
/// pages (a week of snapshots of a queue with many versions is more than one
/// page), at most [`MAX_HISTORY_ROWS`] rows, a row repeated at a page
/// boundary kept once.
async fn history(
    state: &AppState,
    queue: &str,
    since: DateTime<Utc>,
) -> Result<Vec<MetricPoint>, Error> {
    let charted = |m: &str| EVENTS.iter().chain(STATUSES.iter()).any(|(_, n)| *n == m);
    let mut out: Vec<MetricPoint> = Vec::new();
    let mut from = since;
    let mut read = 0;
    loop {
        let page = state
            .client
            .metric_history(queue, from, HISTORY_PAGE)
            .await?;
        read += page.len();
        let full = page.len() == HISTORY_PAGE as usize;
        let Some(last) = page.last().map(|p| p.created_at) else {
            break;
        };
        for p in page {
            // the next page starts at the last time of this one: skip what was seen
            if p.created_at == from
                && out
                    .iter()
                    .rev()
                    .take_while(|o| o.created_at == from)
                    .any(|o| o.metric == p.metric)
            {
                continue;
            }
            if charted(&p.metric) {
                out.push(p);
            }
        }
        if !full || read >= MAX_HISTORY_ROWS || last == from {
            break;
        }
        from = last;
    }
    Ok(out)
}

async fn load(
    state: &AppState,
    queue: &str,
    since: DateTime<Utc>,
    before: Option<i64>,
) -> Result<Data, Error> {
    let c = &state.client;
    Ok(Data {
        info: c.queue_status(queue).await?,
        counters: c.metric_get_common(queue).await?,
        lag: c.queue_lag(queue).await?.as_secs_f64(),
        history: history(state, queue, since).await?,
        logs: c.log_list(queue, None, before, 50).await?,
    })
}

pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(queue): Path<String>,
    q: Result<Query<QueuePageQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return layout::error_page(&viewer, StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let (range, secs) = RANGES
        .iter()
        .copied()
        .find(|(name, _)| Some(*name) == q.range.as_deref())
        .unwrap_or(RANGES[1]);
    let now = Utc::now();
    let since = now - chrono::Duration::seconds(secs);
    let d = match load(&state, &queue, since, q.before).await {
        Ok(d) => d,
        Err(e @ (Error::QueueNotFound { .. } | Error::InvalidQueueName { .. })) => {
            return layout::error_page(&viewer, StatusCode::NOT_FOUND, &e.to_string());
        }
        Err(e) => {
            return layout::error_page(&viewer, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let admin = viewer.can(Scope::Admin);
    let qe = encode(&queue);
    let api = format!("/api/v1/queues/{qe}");
    let events = by_metric(&d.history, &d.counters, now, &EVENTS);
    let statuses = by_metric(&d.history, &d.counters, now, &STATUSES);
    let throughput: Vec<Series> = EVENTS
        .iter()
        .map(|(name, m)| Series {
            name,
            points: rates(events.get(*m).map(Vec::as_slice).unwrap_or(&[])),
        })
        .collect();
    let status_series: Vec<Series> = STATUSES
        .iter()
        .map(|(name, m)| Series {
            name,
            points: thin(statuses.get(*m).map(Vec::as_slice).unwrap_or(&[])),
        })
        .collect();
    let shares: Vec<(&'static str, i64)> = STATUSES
        .iter()
        .map(|(n, m)| (*n, counter(&d.counters, m)))
        .collect();
    let paused = !d.info.is_active;
    let body = html! {
        div.heading {
            h1 { (queue) " " @if paused { span.badge.paused { "paused" } } @else { span.badge.running { "running" } } }
            div.actions {
                a.button href={ "/console/queues/" (qe) "/docs" } { "Documents" }
                a.button href={ "/console/queues/" (qe) "/push" } { "Push a document" }
                @if paused {
                    button.primary data-api={ (api) "/resume" } data-method="POST" disabled[!admin] #resume { "Resume" }
                } @else {
                    button data-api={ (api) "/pause" } data-method="POST" data-confirm="Pause: no picks until resumed. Sure?" disabled[!admin] #pause { "Pause" }
                }
            }
        }
        section.cards {
            div.card { span.label { "Lag" } span.value #lag { (span(d.lag)) } }
            div.card { span.label { "Documents" } span.value { (count(d.counters.total)) } }
            div.card { span.label { "Current version" } span.value { (d.info.current_version) } }
            div.card { span.label { "Errors logged" } span.value { (count(d.counters.errors)) } }
        }
        section.card {
            h2 { "By status" }
            (share_bar("documents by status", &shares))
        }
        nav.ranges aria-label="Time range" {
            @for (name, _) in RANGES {
                a href={ "?range=" (name) } aria-current=[(name == range).then_some("page")] { (name) }
            }
        }
        div.grid2 {
            section.card {
                h2 { "Throughput " span.muted { "(per minute)" } }
                (line_chart("throughput per minute by event", &throughput,
                    "No history yet: the queue's sts job snapshots the counters every 5 minutes."))
            }
            section.card {
                h2 { "Status over time" }
                (line_chart("documents by status over time", &status_series,
                    "No history yet: the queue's sts job snapshots the counters every 5 minutes."))
            }
        }
        div.grid2 {
            section.card {
                h2 { "Settings" }
                (settings(&d.info, &api, admin))
            }
            section.card {
                h2 { "Counters" }
                table.kv { tbody {
                    @for (name, v) in [("entered", d.counters.entered), ("picked", d.counters.picked), ("processed", d.counters.processed),
                        ("rescheduled", d.counters.rescheduled), ("rejected", d.counters.rejected), ("orphaned", d.counters.orphans),
                        ("dropped", d.counters.dropped)] {
                        tr { th { (name) } td.num { (count(v)) } }
                    }
                } }
            }
        }
        section.card #errors {
            h2 { "Error log " span.muted { "(newest first)" } }
            (log_table(&queue, &d.logs, now))
            @if let Some(last) = d.logs.last().filter(|_| d.logs.len() == 50) {
                p { a href={ "?range=" (range) "&before=" (last.id) "#errors" } { "Older errors →" } }
            }
        }
    };
    layout::page(&queue, &viewer, body)
}

fn settings(info: &QueueInfo, api: &str, admin: bool) -> Markup {
    html! {
        form.settings data-api=(api) data-method="PATCH" data-then="reload" data-changed-only {
            fieldset disabled[!admin] {
                label { "Max attempts" input name="max_attempts" type="number" min="1" data-type="int" value=(info.max_attempts); }
                label { "Current version" input name="current_version" type="number" min="0" data-type="int" value=(info.current_version); }
                label { "Logs retention" input name="logs_retention" value=(format_duration(info.logs_retention)); }
                label { "Max payload (bytes)" input name="max_payload_size" type="number" min="1" data-type="int" value=(info.max_payload_size); }
                label { "Retry delay" input name="retry_delay" value=(format_duration(info.retry_delay)); }
                label { "Retry delay max" input name="retry_delay_max" value=(format_duration(info.retry_delay_max)); }
                label { "Retry jitter (0 to 1)" input name="retry_jitter" type="number" min="0" max="1" step="any" data-type="float" value=(info.retry_jitter); }
                label { "Rate limit (N/window, \"none\" removes it)" input name="rate_limit" placeholder="none, e.g. 20/s" value=(info.rate_limit.map(|r| r.to_string()).unwrap_or_default()); }
                label { "Completed documents (keep, at-once, or deleted after e.g. 7d)" input name="completed_retention" placeholder="keep" value=(info.completed_retention.to_string()); }
                button.primary type="submit" { "Save settings" }
            }
        }
    }
}

/// An error log as a table (shared with the document page).
pub(crate) fn log_table(queue: &str, logs: &[LogEntry], now: DateTime<Utc>) -> Markup {
    html! {
        @if logs.is_empty() {
            p.muted { "No error logged." }
        } @else {
            div.scroll { table.logs {
                thead { tr { th { "When" } th { "Subject" } th { "Message" } th { "Ref" } } }
                tbody {
                    @for l in logs {
                        tr {
                            td.nowrap { (when(l.created_at, now)) }
                            td { a href={ "/console/queues/" (encode(queue)) "/doc?subject=" (encode(&l.subject)) } { (l.subject) } }
                            td {
                                (l.message)
                                @if let Some(d) = &l.details { details { summary { "details" } pre { (serde_json::to_string_pretty(d).unwrap_or_default()) } } }
                            }
                            td.muted { (l.ref_id.as_deref().unwrap_or("")) }
                        }
                    }
                }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_minute_and_skip_resets() {
        let t = Utc::now();
        let m = chrono::Duration::minutes(5);
        let r = rates(&[
            (t, 0.0),
            (t + m, 50.0),
            (t + m + m, 10.0),
            (t + m * 3, 20.0),
        ]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].1, 10.0);
        assert_eq!(r[1].1, 2.0);
    }
}
