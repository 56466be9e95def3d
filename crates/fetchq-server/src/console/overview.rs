//! The overview: every queue with its counts by status, state, lag and
//! throughput, refreshing itself every few seconds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use crate::auth::Scope;
use crate::console::layout::{self, count, encode, span};
use crate::console::session::Viewer;
use crate::state::AppState;

/// How far back throughput looks.
const WINDOW: Duration = Duration::from_secs(300);
/// Most samples kept per queue.
const MAX_SAMPLES: usize = 400;

/// Recent readings of each queue's `processed` counter, taken when someone
/// looks at the overview: the throughput column is their slope. Bounded: at
/// most [`MAX_SAMPLES`] per queue, and queues that are gone are forgotten.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    by_queue: Mutex<HashMap<String, VecDeque<(Instant, i64)>>>,
}

impl Samples {
    /// Records `processed` for each queue now and answers each queue's
    /// processed-per-minute over the window (None until two readings a
    /// second or more apart exist).
    fn record(&self, now: Instant, readings: &[(String, i64)]) -> HashMap<String, f64> {
        let mut map = match self.by_queue.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|q, _| readings.iter().any(|(name, _)| name == q));
        let mut rates = HashMap::new();
        for (queue, value) in readings {
            let s = map.entry(queue.clone()).or_default();
            if let Some((t, v)) = s.back()
                && v > value
            {
                if now.duration_since(*t) < Duration::from_secs(5) {
                    // two overview requests read and recorded out of order:
                    // an older reading, not a reset
                    continue;
                }
                // a reset counter (truncate, restore) starts over
                s.clear();
            }
            if s.back()
                .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1))
            {
                s.push_back((now, *value));
            }
            while s.len() > MAX_SAMPLES
                || s.front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
            {
                s.pop_front();
            }
            if let (Some((t0, v0)), Some((t1, v1))) = (s.front(), s.back()) {
                let dt = t1.duration_since(*t0).as_secs_f64();
                if dt >= 1.0 {
                    rates.insert(queue.clone(), (v1 - v0) as f64 / dt * 60.0);
                }
            }
        }
        rates
    }
}

/// One queue's row.
#[derive(Debug, Default)]
struct Row {
    metrics: BTreeMap<String, f64>,
}

impl Row {
    fn get(&self, m: &str) -> i64 {
        self.metrics.get(m).copied().unwrap_or(0.0) as i64
    }
}

async fn rows(state: &AppState) -> Result<Vec<(String, Row, Option<f64>)>, fetchq_core::Error> {
    let mut by_queue: BTreeMap<String, Row> = BTreeMap::new();
    for v in state.client.metric_export().await? {
        by_queue
            .entry(v.queue)
            .or_default()
            .metrics
            .insert(v.metric, v.value);
    }
    let readings: Vec<(String, i64)> = by_queue
        .iter()
        .map(|(q, r)| (q.clone(), r.get("prc")))
        .collect();
    let mut rates = state.samples.record(Instant::now(), &readings);
    Ok(by_queue
        .into_iter()
        .map(|(q, r)| {
            let rate = rates.remove(&q);
            (q, r, rate)
        })
        .collect())
}

fn table_body(rows: &[(String, Row, Option<f64>)]) -> Markup {
    html! {
        @if rows.is_empty() {
            tr { td colspan="10" .muted { "No queue yet. Create one with " code { "fetchq queue create NAME" } " or the API." } }
        }
        @for (q, r, rate) in rows {
            tr data-queue=(q) {
                th scope="row" { a href={ "/console/queues/" (encode(q)) } { (q) } }
                td.num data-col="pending" { (count(r.get("pnd"))) }
                td.num data-col="planned" { (count(r.get("pln"))) }
                td.num data-col="active" { (count(r.get("act"))) }
                td.num data-col="completed" { (count(r.get("cpl"))) }
                td.num data-col="dead" { @if r.get("kll") > 0 { a.dead href={ "/console/queues/" (encode(q)) "/docs?status=dead" } { (count(r.get("kll"))) } } @else { "0" } }
                td.num data-col="lag" { (span(r.metrics.get("lag_seconds").copied().unwrap_or(0.0))) }
                td.num data-col="throughput" { @match rate { Some(x) => (format!("{x:.0}")), None => span.muted { "…" } } }
                td.num data-col="version" { (r.get("current_version")) }
                td data-col="state" { @if r.get("paused") == 1 { span.badge.paused { "paused" } } @else { span.badge.running { "running" } } }
            }
        }
    }
}

/// `GET /` for a browser.
pub(crate) async fn page(state: &AppState, viewer: &Viewer) -> Response {
    let rows = match rows(state).await {
        Ok(r) => r,
        Err(e) => {
            return layout::error_page(
                viewer,
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            );
        }
    };
    layout::page(
        "Queues",
        viewer,
        html! {
            div.heading {
                h1 { "Queues" }
                @if viewer.can(Scope::Admin) {
                    form.inline data-api="/api/v1/queues" data-method="POST" data-then="reload" {
                        input name="name" placeholder="new_queue" required pattern="[a-z][a-z0-9_]{0,39}" aria-label="New queue name";
                        button type="submit" { "Create queue" }
                    }
                }
            }
            p.muted { "Counts are exact at read. Lag is how late the oldest due document is; throughput is documents processed per minute over the last minutes. Refreshes every 3 seconds." }
            div.scroll {
                table.queues {
                    thead { tr {
                        th { "Queue" } th.num { "Pending" } th.num { "Planned" } th.num { "Active" } th.num { "Completed" }
                        th.num { "Dead" } th.num { "Lag" } th.num { "Processed/min" } th.num { "Version" } th { "State" }
                    } }
                    tbody #queues data-refresh="/console/parts/queues" data-every="3000" { (table_body(&rows)) }
                }
            }
        },
    )
}

/// `GET /console/parts/queues`: the overview's rows alone, for its refresh.
pub(crate) async fn part(State(state): State<AppState>, _viewer: Viewer) -> Response {
    match rows(&state).await {
        Ok(r) => layout::html_page(table_body(&r)),
        Err(e) => {
            let mut r =
                layout::html_page(html! { tr { td colspan="10" .error { (e.to_string()) } } });
            *r.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_the_slope_of_the_readings() {
        let s = Samples::default();
        let t = Instant::now();
        assert!(s.record(t, &[("a".into(), 100)]).is_empty());
        let r = s.record(t + Duration::from_secs(30), &[("a".into(), 160)]);
        assert_eq!(r.get("a").copied(), Some(120.0));
        // a reset starts over; a gone queue is forgotten
        assert!(
            s.record(t + Duration::from_secs(31), &[("a".into(), 5)])
                .is_empty()
        );
        s.record(t + Duration::from_secs(32), &[("b".into(), 1)]);
        assert!(s.by_queue.lock().unwrap().get("a").is_none());
    }
}
