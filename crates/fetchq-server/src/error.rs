//! API errors: every failure becomes `{"error": {"code", "message"}}` with a
//! status that says whose fault it is. Bad input is never a 500.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fetchq_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Scope;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: the engine's SQLSTATE (`FQ001`...`FQ005`) or a word
    /// (`unauthorized`, `forbidden`, `not_found`, `lease_lost`, `bad_request`,
    /// `invalid_json`, `unprocessable`, `too_large`, `unavailable`, `timeout`, `internal`).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// An error answer: a status, a code and a message.
///
/// ```
/// use axum::response::IntoResponse;
/// let e = fetchq_server::ApiError::bad_request("limit must be 1 to 1000");
/// assert_eq!(e.into_response().status(), 400);
/// ```
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: String,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// Any status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401: no token, or an unknown one.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown token: send Authorization: Bearer <token>",
        )
    }
    /// 403: the token lacks `scope`.
    pub fn forbidden(scope: Scope) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token lacks the {} scope", scope.as_str()),
        )
    }
    /// 403 `csrf`: a change signed by the console's cookie without its CSRF header.
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "a change signed in by cookie needs the X-CSRF-Token header of its session (reload the page)",
        )
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 413 `too_large`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    /// Prefixes the message with where the problem is (e.g. `docs[3]`).
    pub fn at(mut self, place: &str) -> Self {
        self.message = format!("{place}: {}", self.message);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = %self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let code = err.sqlstate().unwrap_or_default();
        let message = err.to_string();
        match &err {
            Error::InvalidQueueName { .. }
            | Error::InvalidSubject { .. }
            | Error::InvalidArgument { .. }
            | Error::InvalidCron { .. }
            | Error::UnknownTimeZone { .. } => Self::new(StatusCode::BAD_REQUEST, code, message),
            Error::QueueNotFound { .. } => Self::new(StatusCode::NOT_FOUND, code, message),
            Error::NotFound { .. } => Self::not_found(message),
            Error::LeaseLost { .. } => Self::new(StatusCode::CONFLICT, "lease_lost", message),
            Error::Duplicate { .. } => Self::new(StatusCode::CONFLICT, "duplicate", message),
            Error::PayloadTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
            }
            Error::Payload(_) => Self::bad_request(message),
            Error::Database(db) if err.is_transient() => {
                tracing::warn!(error = %db, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unreachable or busy: try again later",
                )
            }
            Error::Database(db) => database_error(db),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

/// A database error the engine did not type: data exceptions (class 22) and
/// program limits (class 54) come from the input; anything else is a bug.
fn database_error(db: &sqlx::Error) -> ApiError {
    let sqlstate = db
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    match sqlstate.as_deref() {
        Some(c) if c.starts_with("22") => ApiError::bad_request(db.to_string()),
        Some(c) if c.starts_with("54") => ApiError::too_large(db.to_string()),
        _ => {
            tracing::warn!(error = %db, "database error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error (logged by the server)",
            )
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                e.body_text(),
            ),
            JsonRejection::JsonSyntaxError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text())
            }
            JsonRejection::MissingJsonContentType(e) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                e.body_text(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::too_large("request body larger than the server's body limit")
            }
            other => Self::bad_request(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}
