//! `fetchq serve`: the fetchq REST API (v1).
//!
//! Any language can push documents, pick and resolve them under a lease, and
//! look inside queues over JSON/HTTP, with bearer tokens scoped `read`,
//! `push`, `work` and `admin`, and an OpenAPI 3 document generated from the
//! code at `/api/v1/openapi.json`.
//!
//! ```no_run
//! use fetchq_server::{Config, Tokens, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = fetchq_core::Client::connect("postgres://localhost/app").await?;
//! let config = Config { tokens: Tokens::parse("admin=s3cr3t-admin,push+work=worker-7x")?, ..Config::default() };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, client, config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod auth;
mod config;
mod console;
mod error;
mod extract;
mod middleware;
mod openapi;
pub mod routes;
mod state;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use fetchq_core::Client;

pub use auth::{
    Authorized, CSRF_HEADER, SESSION_COOKIE, Scope, Scopes, TokenError, Tokens, csrf_token, need,
};
pub use config::Config;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use openapi::openapi;
pub use state::AppState;

/// The API's router with its middleware: request logging, body limit,
/// request timeout, JSON 404/405 answers.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) {
/// let app = fetchq_server::router(client, fetchq_server::Config::default());
/// # let _ = app;
/// # }
/// ```
pub fn router(client: Client, config: Config) -> Router {
    let state = AppState {
        client,
        tokens: Arc::new(config.tokens),
        bulk_budget: config.request_timeout / 2,
        metrics_public: config.metrics_public,
        samples: Arc::default(),
    };
    let limits = middleware::Limits {
        body_limit: config.body_limit,
        request_timeout: config.request_timeout,
    };
    routes::routes()
        .merge(console::routes())
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            middleware::guard,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting connections and lets requests in flight finish.
///
/// # Errors
///
/// I/O errors of the listener.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// println!("listening on {}", listener.local_addr()?);
/// fetchq_server::serve(listener, client, fetchq_server::Config::default(), std::future::pending()).await
/// # }
/// ```
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(client, config))
        .with_graceful_shutdown(shutdown)
        .await
}
