//! A queue's documents: filtered by status, version and subject prefix,
//! keyset-paged in subject order, with bulk actions over the filter.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use fetchq_core::{DocState, Error, Status};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Scope;
use crate::console::layout::{self, encode, status_badge, status_name, when};
use crate::console::session::Viewer;
use crate::routes::docs::filter;
use crate::state::AppState;

/// Documents a page.
const PAGE: i32 = 50;

/// `?status=&version=&prefix=&after=`: empty fields match everything.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DocsQuery {
    status: Option<String>,
    version: Option<String>,
    prefix: Option<String>,
    after: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(queue): Path<String>,
    q: Result<Query<DocsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return layout::error_page(&viewer, StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let status = non_empty(&q.status);
    let prefix = non_empty(&q.prefix);
    let version = match non_empty(&q.version).map(str::parse::<i64>).transpose() {
        Ok(v) => v,
        Err(_) => {
            return layout::error_page(
                &viewer,
                StatusCode::BAD_REQUEST,
                "version must be a whole number",
            );
        }
    };
    let f = match filter(status, version, prefix) {
        Ok(f) => f,
        Err(e) => return layout::error_page(&viewer, StatusCode::BAD_REQUEST, &e.message),
    };
    let after = non_empty(&q.after);
    let docs = match state.client.doc_list(&queue, &f, after, PAGE + 1).await {
        Ok(d) => d,
        Err(e @ (Error::QueueNotFound { .. } | Error::InvalidQueueName { .. })) => {
            return layout::error_page(&viewer, StatusCode::NOT_FOUND, &e.to_string());
        }
        Err(e @ Error::InvalidArgument { .. }) => {
            return layout::error_page(&viewer, StatusCode::BAD_REQUEST, &e.to_string());
        }
        Err(e) => {
            return layout::error_page(&viewer, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let more = docs.len() > PAGE as usize;
    let shown = &docs[..docs.len().min(PAGE as usize)];
    let qe = encode(&queue);
    let mut filter_json = serde_json::Map::new();
    // the page's own parameters (pager links) and the API's (docs:count)
    let mut query = String::new();
    let mut api_query = String::new();
    if let Some(s) = status {
        filter_json.insert("status".into(), json!(s));
        query.push_str(&format!("&status={}", encode(s)));
        api_query.push_str(&format!("&status={}", encode(s)));
    }
    if let Some(v) = version {
        filter_json.insert("version".into(), json!(v));
        query.push_str(&format!("&version={v}"));
        api_query.push_str(&format!("&version={v}"));
    }
    if let Some(p) = prefix {
        filter_json.insert("subject_prefix".into(), json!(p));
        query.push_str(&format!("&prefix={}", encode(p)));
        api_query.push_str(&format!("&subject_prefix={}", encode(p)));
    }
    let next = more
        .then(|| shown.last().map(|d| d.subject.clone()))
        .flatten();
    let body = html! {
        div.heading {
            h1 { a href={ "/console/queues/" (qe) } { (queue) } " / documents" }
            div.actions { a.button href={ "/console/queues/" (qe) "/push" } { "Push a document" } }
        }
        form.filters method="get" {
            label { "Status" select name="status" {
                option value="" selected[status.is_none()] { "any" }
                @for s in [Status::Pending, Status::Planned, Status::Active, Status::Completed, Status::Dead] {
                    option value=(status_name(s)) selected[status == Some(status_name(s))] { (status_name(s)) }
                }
            } }
            label { "Version" input name="version" type="number" min="0" value=[version]; }
            label { "Subject prefix" input name="prefix" value=[prefix] placeholder="e.g. https://example.com/"; }
            button type="submit" { "Filter" }
            a href={ "/console/queues/" (qe) "/docs" } { "Clear" }
        }
        div.scroll {
            table.docs {
                thead { tr { th { "Subject" } th { "Status" } th.num.opt { "Version" } th.num.opt { "Priority" } th.num.opt { "Attempts" } th.num.opt { "Iterations" } th { "Next iteration" } } }
                tbody {
                    @if shown.is_empty() { tr { td colspan="7" .muted { "No document matches." } } }
                    @for d in shown { (row(&qe, d)) }
                }
            }
        }
        nav.pager {
            @if after.is_some() { a href={ "?" (query.trim_start_matches('&')) } { "← First page" } }
            @if let Some(n) = &next { a #next href={ "?after=" (encode(n)) (query) } { "Next page →" } }
        }
        (bulk(&queue, &serde_json::Value::Object(filter_json), &api_query, viewer.can(Scope::Admin)))
    };
    layout::page(&format!("{queue} documents"), &viewer, body)
}

fn row(qe: &str, d: &DocState) -> Markup {
    let now = Utc::now();
    html! {
        tr {
            td.subject { a href={ "/console/queues/" (qe) "/doc?subject=" (encode(&d.subject)) } { (d.subject) } }
            td { (status_badge(d.status)) }
            td.num.opt { (d.version) }
            td.num.opt { (d.priority) }
            td.num.opt { (d.attempts) }
            td.num.opt { (d.iterations) }
            td.nowrap { (when(d.next_iteration, now)) }
        }
    }
}

/// The bulk actions over the current filter: the script asks the API how
/// many documents match, shows it, and runs the action only once confirmed.
fn bulk(queue: &str, filter: &serde_json::Value, query: &str, admin: bool) -> Markup {
    let qe = encode(queue);
    html! {
        section.card.bulk {
            h2 { "Act on every matching document" }
            form #bulk data-bulk=(format!("/api/v1/queues/{qe}/docs:bulk"))
                data-count=(format!("/api/v1/queues/{qe}/docs:count?{}", query.trim_start_matches('&')))
                data-filter=(filter.to_string()) {
                fieldset disabled[!admin] {
                    label { "Action" select name="action" {
                        option value="play" { "play (due now)" }
                        option value="reschedule" { "reschedule" }
                        option value="kill" { "kill" }
                        option value="drop" { "drop (delete)" }
                    } }
                    label { "When (reschedule)" input name="delay" placeholder="e.g. 1h, 30m"; }
                    button type="submit" { "Review…" }
                }
                div.confirm hidden {
                    p.count {}
                    button.danger type="button" data-role="go" { "Confirm" }
                    button type="button" data-role="cancel" { "Cancel" }
                }
                p.result {}
            }
        }
    }
}
