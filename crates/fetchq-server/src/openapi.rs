//! The OpenAPI 3 document, generated from the handlers and types.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, docs, health, logs, queues, work};

#[derive(OpenApi)]
#[openapi(
    info(title = "fetchq REST API", version = "1",
         description = "Push, work and inspect fetchq queues over HTTP. Send `Authorization: Bearer <token>`; \
a token has scopes `read`, `push`, `work` and/or `admin` (admin implies all). Errors are \
`{\"error\": {\"code\", \"message\"}}`: 400 bad input, 401 missing or unknown token, 403 missing scope, \
404 unknown queue or document, 409 lost lease, 413 body or payload too large, 422 JSON of the wrong shape, \
503 database unreachable. `resolve` answers per item (`ok`, `lease_lost`, `error`) with 200, \
or 409 when every item lost its lease."),
    paths(
        health::health,
        queues::list, queues::create, queues::show, queues::patch, queues::drop_queue, queues::pause, queues::resume,
        docs::add, docs::list, docs::show,
        work::pick, work::resolve, work::extend,
        admin::play, admin::kill, admin::reschedule, admin::delete, admin::bulk,
        logs::logs, logs::metrics,
    ),
    modifiers(&BearerAuth),
    tags((name = "queues"), (name = "docs"), (name = "work"), (name = "admin"), (name = "inspect"), (name = "meta")),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3 document of API v1.
///
/// ```
/// let doc = fetchq_server::openapi();
/// assert!(doc.paths.paths.contains_key("/api/v1/queues/{queue}/pick"));
/// ```
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json` (no token needed).
pub(crate) async fn serve_document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
