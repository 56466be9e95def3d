//! The web console: server-rendered pages inside `fetchq serve`, signed in
//! with the API's tokens. Pages read through the engine client; every action
//! is a call of the browser to the REST API itself (same handlers, same
//! checks), signed by the session cookie plus the page's CSRF token.

mod chart;
mod doc;
mod docs;
mod layout;
mod overview;
mod push;
mod queue;
mod session;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub(crate) use overview::Samples;
use session::{SignIn, Viewer};

use crate::state::AppState;

const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// The console's routes (the overview is `GET /`, see [`home`]).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/login",
            get(session::login_page).post(session::login_submit),
        )
        .route("/logout", post(session::logout))
        .route(layout::CSS, get(css))
        .route(layout::JS, get(js))
        .route("/console/parts/queues", get(overview::part))
        .route("/console/queues/{queue}", get(queue::page))
        .route("/console/queues/{queue}/docs", get(docs::page))
        .route("/console/queues/{queue}/doc", get(doc::page))
        .route("/console/queues/{queue}/push", get(push::page))
}

/// Whether a request to `/` comes from a browser (wants HTML).
pub(crate) fn wants_html(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `GET /` for a browser: `?token=` signs in (the URL `fetchq serve`
/// prints), otherwise the overview, or the sign-in form.
pub(crate) async fn home(state: AppState, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    if let Ok(Query(q)) = Query::<SignIn>::try_from_uri(&parts.uri)
        && q.has_token()
    {
        return session::sign_in_query(&state, &parts.headers, q);
    }
    match <Viewer as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    {
        Ok(viewer) => overview::page(&state, &viewer).await,
        Err(redirect) => redirect,
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn css(State(_): State<AppState>) -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

async fn js(State(_): State<AppState>) -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}
