//! The endpoints, one module per concept.

pub mod admin;
pub mod docs;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod queues;
pub mod schedules;
pub mod work;

use axum::Router;
use axum::routing::{get, post, put};

use crate::state::AppState;

/// Every route of API v1 (the middleware is added by [`crate::router`]).
pub(crate) fn routes() -> Router<AppState> {
    let q = "/api/v1/queues/{queue}";
    Router::new()
        .route("/", get(health::index))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/openapi.json", get(crate::openapi::serve_document))
        .route("/api/v1/queues", get(queues::list).post(queues::create))
        .route("/api/v1/schedules", get(schedules::list))
        .route(
            "/api/v1/schedules/{name}",
            put(schedules::set).delete(schedules::drop_schedule),
        )
        .route(
            q,
            get(queues::show)
                .patch(queues::patch)
                .delete(queues::drop_queue),
        )
        .route(&format!("{q}/pause"), post(queues::pause))
        .route(&format!("{q}/resume"), post(queues::resume))
        .route(&format!("{q}/docs"), get(docs::list).post(docs::add))
        .route(&format!("{q}/docs:bulk"), post(admin::bulk))
        .route(&format!("{q}/docs:count"), get(docs::count))
        .route(
            &format!("{q}/docs/{{subject}}"),
            get(docs::show).delete(admin::delete),
        )
        .route(&format!("{q}/docs/{{subject}}/play"), post(admin::play))
        .route(&format!("{q}/docs/{{subject}}/kill"), post(admin::kill))
        .route(
            &format!("{q}/docs/{{subject}}/reschedule"),
            post(admin::reschedule),
        )
        .route(&format!("{q}/pick"), post(work::pick))
        .route(&format!("{q}/resolve"), post(work::resolve))
        .route(&format!("{q}/extend"), post(work::extend))
        .route(&format!("{q}/logs"), get(logs::logs))
        .route(&format!("{q}/metrics"), get(logs::metrics))
}
