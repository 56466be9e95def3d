//! The OpenAPI 3 document, generated from the handlers and types.

use axum::Json;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, docs, health, logs, metrics, queues, schedules, work};

#[derive(OpenApi)]
#[openapi(
    info(title = "fetchq REST API", version = "1",
         description = "Push, work and inspect fetchq queues over HTTP. Send `Authorization: Bearer <token>`; \
a token has scopes `read`, `push`, `work` and/or `admin` (admin implies all). Errors are \
`{\"error\": {\"code\", \"message\"}}`: 400 bad input, 401 missing or unknown token, 403 missing scope, \
404 unknown queue, document or schedule, 409 lost lease, 413 body or payload too large, 422 JSON of the wrong shape, \
503 database unreachable. `resolve` answers per item (`ok`, `lease_lost`, `error`) with 200, \
or 409 when every item lost its lease."),
    paths(
        health::health, health::index, serve_document,
        queues::list, queues::create, queues::show, queues::patch, queues::drop_queue, queues::pause, queues::resume,
        docs::add, docs::list, docs::show, docs::count,
        work::pick, work::resolve, work::extend,
        admin::play, admin::kill, admin::reschedule, admin::delete, admin::bulk,
        logs::logs, logs::metrics, metrics::metrics,
        schedules::list, schedules::set, schedules::drop_schedule,
    ),
    modifiers(&BearerAuth, &CommonErrors),
    tags((name = "queues"), (name = "docs"), (name = "work"), (name = "admin"), (name = "inspect"), (name = "schedules"), (name = "meta")),
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

/// Documents on every API operation the error answers any of them can give
/// (a bad path segment, a missing token or scope, an unknown queue, a body
/// too large or of the wrong type, the database unreachable).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let common = [
            (
                "400",
                "bad input (a path segment, a parameter or a field out of range)",
            ),
            ("401", "missing or unknown token"),
            ("403", "the token lacks the scope"),
            ("404", "unknown queue or document"),
            ("413", "body or payload too large"),
            ("415", "the body is not sent as application/json"),
            ("422", "JSON of the wrong shape or types"),
            (
                "503",
                "the database is unreachable, or the request timed out",
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/queues") && !path.starts_with("/api/v1/schedules") {
                continue;
            }
            let has_body = |op: &utoipa::openapi::path::Operation| op.request_body.is_some();
            let ops = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
                item.put.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    let schema = match p.name.as_str() {
                        "queue" => ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^[a-z][a-z0-9_]{0,39}$")),
                        "name" if path.starts_with("/api/v1/schedules") => ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$")),
                        "subject" => ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(255)),
                        "limit" => ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(1000)),
                        "version" => ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0))
                            .maximum(Some(i32::MAX)),
                        "status" => {
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .enum_values(Some([
                                    "pending",
                                    "planned",
                                    "active",
                                    "completed",
                                    "dead",
                                ]))
                        }
                        _ => continue,
                    };
                    p.schema = Some(schema.build().into());
                }
                let with_body = has_body(op);
                for (code, description) in common {
                    if !with_body && (code == "415" || code == "422") {
                        continue;
                    }
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
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
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "this OpenAPI 3 document", body = Object)))]
pub(crate) async fn serve_document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
