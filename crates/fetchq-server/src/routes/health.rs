//! `GET /health` and `GET /`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long `/health` waits for the database before answering 503.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// This server's version.
    pub engine: String,
    /// The schema version installed in the database (absent when unreachable).
    pub schema: Option<i32>,
    /// Why the database is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Liveness and database reachability (no token needed).
#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, description = "the database answers", body = Health),
               (status = 503, description = "the database is unreachable", body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let engine = env!("CARGO_PKG_VERSION").to_owned();
    let error = match tokio::time::timeout(HEALTH_TIMEOUT, state.client.info()).await {
        Ok(Ok(info)) => {
            let body = Health {
                status: "ok".into(),
                engine,
                schema: Some(info.schema_version),
                error: None,
            };
            return (StatusCode::OK, Json(body));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {HEALTH_TIMEOUT:?}"),
    };
    tracing::warn!(%error, "health: database unavailable");
    let body = Health {
        status: "unavailable".into(),
        engine,
        schema: None,
        error: Some(error),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// Where things are (no token needed). A browser (`Accept: text/html`) gets
/// the web console instead.
#[utoipa::path(get, path = "/", tag = "meta",
    responses((status = 200, description = "links to the API, its document and the health check (a browser gets the console)", body = Object)))]
pub async fn index(
    State(state): State<AppState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if crate::console::wants_html(&req) {
        return crate::console::home(state, req).await;
    }
    Json(serde_json::json!({
        "name": "fetchq",
        "version": env!("CARGO_PKG_VERSION"),
        "api": "/api/v1",
        "queues": "/api/v1/queues",
        "openapi": "/api/v1/openapi.json",
        "health": "/health",
        "console": "/ (in a browser)",
        "auth": "Authorization: Bearer <token> (or ?token=<token>)",
    }))
    .into_response()
}
