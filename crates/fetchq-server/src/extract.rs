//! Axum's extractors with their rejections turned into [`ApiError`]s, and
//! the small parsers of input values (durations, times, limits, subjects).

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use fetchq_core::{Schedule, Status};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Json<T>` answering [`ApiError`] on a bad body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// `Query<T>` answering [`ApiError`] (400) on bad parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// The `{queue}` path segment, validated as a queue name (400 `FQ001`).
#[derive(Debug)]
pub struct QueueName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for QueueName {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(params) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        let queue = params
            .into_iter()
            .find(|(k, _)| k == "queue")
            .map(|(_, v)| v)
            .ok_or_else(|| ApiError::bad_request("missing queue in the path"))?;
        fetchq_core::validate_queue_name(&queue)?;
        Ok(Self(queue))
    }
}

/// The `{queue}` and `{subject}` path segments, both validated.
#[derive(Debug)]
pub struct QueueSubject(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for QueueSubject {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let QueueName(queue) = QueueName::from_request_parts(parts, state).await?;
        let axum::extract::Path(params) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        let subject = params
            .into_iter()
            .find(|(k, _)| k == "subject")
            .map(|(_, v)| v)
            .ok_or_else(|| ApiError::bad_request("missing subject in the path"))?;
        check_subject(&subject)?;
        Ok(Self(queue, subject))
    }
}

/// 1 to 255 characters, no NUL byte (the engine's rule).
pub fn check_subject(subject: &str) -> Result<(), ApiError> {
    let n = subject.chars().count();
    if n == 0 || n > 255 {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            fetchq_core::codes::INVALID_SUBJECT,
            format!("a subject has 1 to 255 characters, got {n}"),
        ));
    }
    if subject.contains('\0') {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            fetchq_core::codes::INVALID_SUBJECT,
            "a subject cannot contain a NUL character",
        ));
    }
    Ok(())
}

/// A limit in `1..=max` (default `default`), refused with 400 otherwise.
pub fn limit(value: Option<i64>, default: i32, max: i32) -> Result<i32, ApiError> {
    let v = value.unwrap_or(i64::from(default));
    if v < 1 || v > i64::from(max) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {max}, got {v}"
        )));
    }
    Ok(v as i32)
}

/// A version in `0..=i32::MAX`.
pub fn version(value: Option<i64>) -> Result<Option<i32>, ApiError> {
    value
        .map(|v| {
            i32::try_from(v).ok().filter(|v| *v >= 0).ok_or_else(|| {
                ApiError::bad_request(format!("version must be 0 to 2147483647, got {v}"))
            })
        })
        .transpose()
}

/// The longest delay or lease accepted (10 years): beyond, PostgreSQL's
/// timestamps overflow.
const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);

/// `"5m"`, `"90s"`, `"2h"`, `"1d"`, `"500ms"`, `"1h 30m"`.
pub fn duration(text: &str, what: &str) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "{what}: {text:?} is not a duration like \"5m\", \"90s\", \"2h\", \"1d\" or \"500ms\" ({e})"
        ))
    })?;
    if d > MAX_DURATION {
        return Err(ApiError::bad_request(format!("{what}: at most 10 years")));
    }
    Ok(d)
}

/// A duration as text that [`duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `next_iteration` (RFC 3339) or `delay` (a duration), not both; neither is `default`.
pub fn schedule(
    next_iteration: Option<&str>,
    delay: Option<&str>,
    default: Schedule,
) -> Result<Schedule, ApiError> {
    match (next_iteration, delay) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give next_iteration or delay, not both",
        )),
        (Some(t), None) => Ok(Schedule::At(time(t, "next_iteration")?)),
        (None, Some(d)) => Ok(Schedule::After(duration(d, "delay")?)),
        (None, None) => Ok(default),
    }
}

/// An RFC 3339 time within years 1..=9999.
pub fn time(text: &str, what: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{what}: {text:?} is not an RFC 3339 time like 2030-01-31T12:00:00Z ({e})"
            ))
        })
}

/// `pending`, `planned`, `active`, `completed`, `dead` (or their codes 1, 0, 2, 3, -1).
pub fn status(text: &str) -> Result<Status, ApiError> {
    Ok(match text.trim() {
        "pending" | "1" => Status::Pending,
        "planned" | "0" => Status::Planned,
        "active" | "2" => Status::Active,
        "completed" | "3" => Status::Completed,
        "dead" | "-1" => Status::Dead,
        other => {
            return Err(ApiError::bad_request(format!(
                "status {:?}: use pending, planned, active, completed or dead",
                other.chars().take(40).collect::<String>()
            )));
        }
    })
}

/// The name of a status.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Planned => "planned",
        Status::Active => "active",
        Status::Completed => "completed",
        Status::Dead => "dead",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_limits_and_schedules() {
        assert_eq!(duration("5m", "d").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("500ms", "d").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("1d", "d").unwrap(), Duration::from_secs(86_400));
        assert!(duration("5 parsecs", "d").is_err());
        assert!(duration("99999999999d", "d").is_err());
        assert_eq!(
            duration(&format_duration(Duration::from_secs(90_061)), "d").unwrap(),
            Duration::from_secs(90_061)
        );
        assert!(limit(Some(0), 1, 1000).is_err());
        assert!(limit(Some(-1), 1, 1000).is_err());
        assert!(limit(Some(1_000_000_000_000), 1, 1000).is_err());
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
        assert!(schedule(Some("2030-01-01T00:00:00Z"), Some("5m"), Schedule::Now).is_err());
        assert!(schedule(Some("tomorrow"), None, Schedule::Now).is_err());
        assert!(version(Some(-1)).is_err() && version(Some(1 << 40)).is_err());
    }
}
