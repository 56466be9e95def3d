//! One document: fields, payload, lease state, its errors, its trace across
//! queues, and the actions play, reschedule, kill and drop.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use fetchq_core::{DocState, Error, Status, TraceStep};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::Scope;
use crate::console::layout::{self, encode, span, status_badge, when};
use crate::console::queue::log_table;
use crate::console::session::Viewer;
use crate::extract::check_subject;
use crate::state::AppState;

/// `?subject=`.
#[derive(Debug, Deserialize)]
pub(crate) struct DocQuery {
    subject: String,
}

pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(queue): Path<String>,
    q: Result<Query<DocQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return layout::error_page(&viewer, StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if let Err(e) = check_subject(&q.subject) {
        return layout::error_page(&viewer, StatusCode::BAD_REQUEST, &e.message);
    }
    let c = &state.client;
    let doc = match c.get(&queue, &q.subject).await {
        Ok(d) => d,
        Err(
            e @ (Error::QueueNotFound { .. }
            | Error::InvalidQueueName { .. }
            | Error::NotFound { .. }),
        ) => {
            return layout::error_page(&viewer, StatusCode::NOT_FOUND, &e.to_string());
        }
        Err(e) => {
            return layout::error_page(&viewer, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let (logs, trace) = match (
        c.log_list(&queue, Some(&q.subject), None, 50).await,
        c.trace(&q.subject).await,
    ) {
        (Ok(l), Ok(t)) => (l, t),
        (Err(e), _) | (_, Err(e)) => {
            return layout::error_page(&viewer, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let body = html! {
        div.heading {
            h1 { a href={ "/console/queues/" (encode(&queue)) } { (queue) } " / " span.subject #subject { (doc.subject) } }
        }
        div.grid2 {
            section.card {
                h2 { "Document" }
                (fields(&doc))
            }
            section.card {
                h2 { "Actions" }
                (actions(&queue, &doc, viewer.can(Scope::Admin)))
            }
        }
        section.card {
            h2 { "Payload" }
            pre.payload #payload { (serde_json::to_string_pretty(&doc.payload).unwrap_or_default()) }
        }
        section.card {
            h2 { "Errors" }
            (log_table(&queue, &logs, Utc::now()))
        }
        section.card {
            h2 { "Trace across queues" }
            (trace_table(&trace))
        }
    };
    layout::page(&doc.subject, &viewer, body)
}

fn lease(doc: &DocState) -> Markup {
    let now = Utc::now();
    let left = (doc.next_iteration - now).num_milliseconds() as f64 / 1000.0;
    html! {
        @if doc.status != Status::Active {
            "not leased"
        } @else if left > 0.0 {
            "leased by a worker, expires in " (span(left))
        } @else {
            "lease expired " (span(-left)) " ago: an orphan, made due again by the next maintenance pass"
        }
    }
}

fn fields(doc: &DocState) -> Markup {
    let now = Utc::now();
    html! {
        table.kv { tbody {
            tr { th { "Status" } td #status { (status_badge(doc.status)) } }
            tr { th { "Lease" } td #lease { (lease(doc)) } }
            tr { th { "Version" } td { (doc.version) } }
            tr { th { "Priority" } td { (doc.priority) } }
            tr { th { "Key" } td #key { @match &doc.key { Some(k) => (k), None => span.muted { "none" } } } }
            tr { th { "Attempts" } td { (doc.attempts) } }
            tr { th { "Iterations" } td { (doc.iterations) } }
            tr { th { @if doc.status == Status::Active { "Lease expiry" } @else { "Next iteration" } } td { (when(doc.next_iteration, now)) } }
            tr { th { "Last iteration" } td { @match doc.last_iteration { Some(t) => (when(t, now)), None => span.muted { "never" } } } }
            tr { th { "Created" } td { (when(doc.created_at, now)) } }
        } }
    }
}

fn actions(queue: &str, doc: &DocState, admin: bool) -> Markup {
    // a browser turns the path segments `.` and `..` (even percent-encoded)
    // into "this folder" and "the folder above": those subjects cannot be
    // put in an action's URL
    let addressable = !doc.subject.chars().all(|c| c == '.');
    let can = admin && addressable;
    let base = format!(
        "/api/v1/queues/{}/docs/{}",
        encode(queue),
        encode(&doc.subject)
    );
    html! {
        div.buttons {
            button.primary #play data-api={ (base) "/play" } data-method="POST" disabled[!can] { "Play (due now)" }
            button #kill data-api={ (base) "/kill" } data-method="POST" data-confirm="Kill it? Click again." disabled[!can] { "Kill" }
            button.danger #drop data-api=(base) data-method="DELETE" data-confirm="Delete it for good? Click again."
                data-then={ "/console/queues/" (encode(queue)) "/docs" } disabled[!can] { "Drop" }
        }
        form.reschedule data-api={ (base) "/reschedule" } data-method="POST" data-then="reload" {
            fieldset disabled[!can] {
                label { "Reschedule at" input name="next_iteration" type="datetime-local" data-type="datetime"; }
                label { "or after" input name="delay" placeholder="e.g. 1h"; }
                button type="submit" { "Reschedule" }
            }
        }
        @if !admin { p.muted { "This token is read-only: actions need an admin token." } }
        @if admin && !addressable { p.muted { "A subject made of dots cannot be put in a URL: act on it with the CLI (fetchq doc ...)." } }
    }
}

fn trace_table(steps: &[TraceStep]) -> Markup {
    let now = Utc::now();
    html! {
        @if steps.is_empty() { p.muted { "Nothing." } } @else {
            div.scroll { table {
                thead { tr { th.num { "#" } th { "When" } th { "Queue" } th { "Kind" } th { "What" } } }
                tbody { @for s in steps {
                    tr {
                        td.num { (s.step) }
                        td.nowrap { (when(s.created_at, now)) }
                        td { a href={ "/console/queues/" (encode(&s.queue)) } { (s.queue) } }
                        td { (s.kind) }
                        td { (s.info) }
                    }
                } }
            } }
        }
    }
}
