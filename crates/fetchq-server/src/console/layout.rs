//! The page shell and the small formatters every page shares.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fetchq_core::Status;
use maud::{DOCTYPE, Markup, html};

use crate::auth::Scope;
use crate::console::session::Viewer;

/// Where the assets are served (their names carry the crate version, so a
/// new release is never served a stale cached file).
pub(crate) const CSS: &str = concat!("/console/assets/app-", env!("CARGO_PKG_VERSION"), ".css");
pub(crate) const JS: &str = concat!("/console/assets/app-", env!("CARGO_PKG_VERSION"), ".js");

/// An HTML answer with the console's security headers: scripts and styles
/// from this server only (no inline script runs, so injected markup could not
/// run even if it escaped), no framing, no referrer, no caching.
pub(crate) fn html_page(markup: Markup) -> Response {
    let mut r = markup.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(c) = csrf { meta name="csrf-token" content=(c); }
            title { (title) " · fetchq" }
            link rel="stylesheet" href=(CSS);
            script src=(JS) defer {}
        }
    }
}

/// A page for someone not signed in.
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body { main.narrow { (body) } }
        }
    }
}

/// A page of the signed-in console: the top bar, then `body`.
pub(crate) fn page(title: &str, viewer: &Viewer, body: Markup) -> Response {
    html_page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, Some(&viewer.csrf)))
            body {
                header.top {
                    a.brand href="/" { "fetchq" }
                    nav { a href="/" { "Queues" } }
                    div.who {
                        @if !viewer.can(Scope::Admin) {
                            span.badge.readonly title="This token can look but not act" { "read-only" }
                        }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                div #flash role="status" aria-live="polite" {}
                main { (body) }
            }
        }
    })
}

/// A signed-in error page (unknown queue or document...).
pub(crate) fn error_page(
    viewer: &Viewer,
    status: axum::http::StatusCode,
    message: &str,
) -> Response {
    let mut r = page(
        "Error",
        viewer,
        html! { section.card { h1 { "Nothing here" } p.error { (message) } p { a href="/" { "Back to the queues" } } } },
    );
    *r.status_mut() = status;
    r
}

/// `text` percent-encoded for a path segment or a query value (everything
/// but unreserved characters).
///
/// ```ignore
/// assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
/// ```
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A count with thousands separators: `1,234,567`.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A short human duration: `0s`, `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
pub(crate) fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as i64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A time with how far it is from now: `2026-11-25 18:02:11 (in 5m 3s)`.
pub(crate) fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let d = (t - now).num_milliseconds() as f64 / 1000.0;
    let rel = if d.abs() < 1.0 {
        "now".to_owned()
    } else if d > 0.0 {
        format!("in {}", span(d))
    } else {
        format!("{} ago", span(-d))
    };
    html! { time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) " " span.muted { "(" (rel) ")" } } }
}

/// The status's name, as the API writes it.
pub(crate) fn status_name(s: Status) -> &'static str {
    crate::extract::status_name(s)
}

/// A coloured status label.
pub(crate) fn status_badge(s: Status) -> Markup {
    let name = status_name(s);
    html! { span class={ "badge st-" (name) } { (name) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatters() {
        assert_eq!(encode("a b/c?&=<>%é"), "a%20b%2Fc%3F%26%3D%3C%3E%25%C3%A9");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(-1234567), "-1,234,567");
        assert_eq!(span(0.2), "0s");
        assert_eq!(span(303.0), "5m 3s");
        assert_eq!(span(7800.0), "2h 10m");
        assert_eq!(span(273600.0), "3d 4h");
    }
}
