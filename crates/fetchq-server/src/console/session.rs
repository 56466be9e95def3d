//! Signing in to the console: the token goes into an HttpOnly,
//! SameSite=Strict cookie; every page carries the session's CSRF token, which
//! the API wants in `X-CSRF-Token` for any change signed by that cookie.

use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{SESSION_COOKIE, Scope, Scopes, csrf_token, session_cookie, to_hex};
use crate::console::layout;
use crate::state::AppState;

/// Who is looking at a page: the scopes of the session's token and its CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub scopes: Scopes,
    pub csrf: String,
}

impl Viewer {
    /// Whether the session may do what needs `scope` (buttons are disabled otherwise).
    pub fn can(&self, scope: Scope) -> bool {
        self.scopes.allows(scope)
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // the console shows payloads and logs: a session needs `read`
        // (a push or work token of a worker is no key to look inside)
        if let Some(secret) = session_cookie(&parts.headers)
            && let Some(scopes) = state.tokens.authenticate(secret.as_bytes())
            && scopes.allows(Scope::Read)
        {
            return Ok(Viewer {
                scopes,
                csrf: csrf_token(&secret),
            });
        }
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Err(Redirect::to(&format!("/login?next={}", layout::encode(next))).into_response())
    }
}

/// `GET /login` and `POST /login`.
#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    token: Option<String>,
    next: Option<String>,
}

impl SignIn {
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

/// Whether the browser says the request came from another site
/// (`Sec-Fetch-Site: cross-site`, or an `Origin` of another host): such a
/// request must not sign anybody in (login CSRF: a page could otherwise swap
/// the victim's session for one of the attacker's tokens).
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
    {
        return true;
    }
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin = origin.to_str().unwrap_or_default();
            let host = host.to_str().unwrap_or_default();
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or(origin);
            bare != host
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// `/?token=` or `/login?token=`: signs in and drops the token from the
/// address (a link from another site shows the form instead).
pub(crate) fn sign_in_query(state: &AppState, headers: &HeaderMap, q: SignIn) -> Response {
    if cross_site(headers) {
        return layout::html_page(form(q.next.as_deref(), None));
    }
    sign_in(
        state,
        headers,
        q.token.as_deref().unwrap_or_default(),
        q.next.as_deref(),
    )
}

/// Only a path of this site: never `//host` or a full URL (no open redirect).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/login")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n
        }
        _ => "/",
    }
}

/// Signs in with `secret` and goes to `next`, or shows the form again.
pub(crate) fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    secret: &str,
    next: Option<&str>,
) -> Response {
    let Some(scopes) = state.tokens.authenticate(secret.as_bytes()) else {
        return (
            StatusCode::UNAUTHORIZED,
            layout::html_page(form(next, Some("That token is not known to this server."))),
        )
            .into_response();
    };
    if !scopes.allows(Scope::Read) {
        return (
            StatusCode::FORBIDDEN,
            layout::html_page(form(
                next,
                Some("That token cannot read: the console needs a read or admin token."),
            )),
        )
            .into_response();
    }
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        to_hex(secret.as_bytes()),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to(local_path(next)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

pub(crate) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SignIn>,
) -> Response {
    if q.has_token() {
        return sign_in_query(&state, &headers, q);
    }
    layout::html_page(form(q.next.as_deref(), None))
}

pub(crate) async fn login_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<SignIn>,
) -> Response {
    if cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            layout::html_page(form(
                f.next.as_deref(),
                Some("Sign in from this server's own page."),
            )),
        )
            .into_response();
    }
    let secret = f.token.unwrap_or_default();
    sign_in(&state, &headers, secret.trim(), f.next.as_deref())
}

/// `POST /logout`.
#[derive(Debug, Deserialize)]
pub(crate) struct SignOut {
    csrf: Option<String>,
}

pub(crate) async fn logout(viewer: Viewer, Form(f): Form<SignOut>) -> Response {
    if f.csrf.as_deref() != Some(viewer.csrf.as_str()) {
        return (
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page",
        )
            .into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("fetchq_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

fn form(next: Option<&str>, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            section.signin {
                h1 { "fetchq" }
                p.muted { "Sign in with an API token. A read token sees everything; acting needs an admin token." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(local_path(next));
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn sign_in_from_another_site_is_refused() {
        use super::cross_site;
        use axum::http::{HeaderMap, HeaderValue};
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(!cross_site(&h(&[])), "a link from a terminal");
        assert!(!cross_site(&h(&[("sec-fetch-site", "none")])));
        assert!(!cross_site(&h(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&h(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(cross_site(&h(&[
            ("origin", "null"),
            ("host", "127.0.0.1:8080")
        ])));
    }

    #[test]
    fn next_is_always_a_local_path() {
        assert_eq!(local_path(Some("/console/queues/a")), "/console/queues/a");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "evil",
            "/login?x",
            "/\n",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
