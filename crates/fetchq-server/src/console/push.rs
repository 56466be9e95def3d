//! Pushing a document from a form (through `POST /api/v1/queues/{queue}/docs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use fetchq_core::Error;
use maud::html;

use crate::auth::Scope;
use crate::console::layout::{self, encode};
use crate::console::session::Viewer;
use crate::state::AppState;

pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(queue): Path<String>,
) -> Response {
    let info = match state.client.queue_status(&queue).await {
        Ok(i) => i,
        Err(e @ (Error::QueueNotFound { .. } | Error::InvalidQueueName { .. })) => {
            return layout::error_page(&viewer, StatusCode::NOT_FOUND, &e.to_string());
        }
        Err(e) => {
            return layout::error_page(&viewer, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let qe = encode(&queue);
    let can = viewer.can(Scope::Push);
    let body = html! {
        div.heading { h1 { a href={ "/console/queues/" (qe) } { (queue) } " / push a document" } }
        section.card.narrow {
            form #push data-api={ "/api/v1/queues/" (qe) "/docs" } data-method="POST" data-wrap="docs"
                data-then={ "/console/queues/" (qe) "/doc?subject=" } {
                fieldset disabled[!can] {
                    label { "Subject" input name="subject" required maxlength="255" placeholder="e.g. https://example.com/page"; }
                    label { "Version" input name="version" type="number" min="0" data-type="int" value=(info.current_version); }
                    label { "Priority" input name="priority" type="number" data-type="int" value="0"; }
                    label { "Due at" input name="next_iteration" type="datetime-local" data-type="datetime"; }
                    label { "or after" input name="delay" placeholder="e.g. 5m (empty: now)"; }
                    label { "Payload (JSON)" textarea name="payload" data-type="json" rows="8" { "{}" } }
                    button.primary type="submit" { "Push" }
                }
            }
            @if !can { p.muted { "This token cannot push: that needs a push or admin token." } }
        }
    };
    layout::page(&format!("push to {queue}"), &viewer, body)
}
