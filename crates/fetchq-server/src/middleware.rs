//! Per-request middleware: one log line, body limit by `Content-Length`,
//! request timeout, JSON answers for unknown routes.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub body_limit: usize,
    pub request_timeout: Duration,
}

/// Refuses a body announced larger than the limit before reading it, bounds
/// the time of the request, and logs one line (method, path without the
/// query, status, time: never a header, so never a token).
pub(crate) async fn guard(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let started = Instant::now();
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let response = if announced.is_some_and(|n| n > limits.body_limit as u64) {
        let mut r = ApiError::too_large(format!(
            "request body larger than the server's limit of {} bytes",
            limits.body_limit
        ))
        .into_response();
        // the rest of the body is not read: close the connection
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        r
    } else {
        match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than {:?} and was stopped; what it committed \
                     before stays done (the batches of a bulk action: send it again to \
                     finish; resolutions: answered lease_lost if sent again)",
                    limits.request_timeout
                ),
            )
            .into_response(),
        }
    };
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    if response.status().is_server_error() {
        tracing::warn!(%method, %path, status, ms, "request");
    } else {
        tracing::debug!(%method, %path, status, ms, "request");
    }
    response
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint: see /api/v1/openapi.json")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}
