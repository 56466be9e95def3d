//! The console over plain HTTP: sign-in cookie, CSRF on cookie-signed
//! changes, read-only sessions, escaping of user data, security headers.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use common::{ADMIN, READ, Server};
use fetchq_core::{NewDoc, Status};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn cookie(token: &str) -> String {
    format!("fetchq_session={}", hex(token))
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A request carrying the cookie header `cookie` and, if given, a CSRF header.
async fn signed(
    s: &Server,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    let mut req = no_redirects()
        .request(method, s.url(path))
        .header(COOKIE, cookie);
    if let Some(token) = csrf {
        req = req.header("x-csrf-token", token);
    }
    req.send().await.unwrap()
}

async fn page(s: &Server, path: &str, token: &str) -> (StatusCode, String) {
    let res = no_redirects()
        .get(s.url(path))
        .header(ACCEPT, "text/html")
        .header(COOKIE, cookie(token))
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

#[tokio::test]
async fn the_printed_url_signs_in_with_a_strict_http_only_cookie() {
    let s = Server::start().await;
    let http = no_redirects();
    let res = http
        .get(s.url(&format!("/?token={ADMIN}")))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()[LOCATION],
        "/",
        "the token leaves the address bar"
    );
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with(&cookie(ADMIN)), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );

    // a wrong token: the form again, 401, no cookie
    let res = http
        .get(s.url("/login?token=nope-nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(SET_COOKIE).is_none());
    assert!(res.text().await.unwrap().contains("not known"));

    // the form posts too, and `next` never leaves the site
    let res = http
        .post(s.url("/login"))
        .form(&[("token", ADMIN), ("next", "//evil.example/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()[LOCATION], "/");
    let res = http
        .post(s.url("/login"))
        .form(&[("token", ADMIN), ("next", "/console/queues/q")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()[LOCATION], "/console/queues/q");

    // signed out: the overview sends to the sign-in form, remembering where
    let res = http
        .get(s.url("/console/queues/q/docs?status=dead"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()[LOCATION],
        "/login?next=%2Fconsole%2Fqueues%2Fq%2Fdocs%3Fstatus%3Ddead"
    );
    // a program asking `/` still gets the JSON index
    let (status, body) = s.call(Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["console"], "/ (in a browser)");
}

#[tokio::test]
async fn a_cookie_signed_change_needs_the_csrf_header_of_its_session() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    let pause = "/api/v1/queues/q/pause";
    // no header, a wrong one, another session's: refused, nothing changed
    for header in [
        None,
        Some("x".repeat(64)),
        Some(fetchq_server::csrf_token(READ)),
    ] {
        let res = signed(&s, Method::POST, pause, &cookie(ADMIN), header.as_deref()).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "csrf");
    }
    assert!(s.db.client.queue_status("q").await.unwrap().is_active);
    // reads need no header; the right header acts
    let res = signed(&s, Method::GET, "/api/v1/queues/q", &cookie(ADMIN), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let csrf = fetchq_server::csrf_token(ADMIN);
    let res = signed(&s, Method::POST, pause, &cookie(ADMIN), Some(&csrf)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!s.db.client.queue_status("q").await.unwrap().is_active);
    // a read session with its own CSRF token still lacks the scope
    let csrf = fetchq_server::csrf_token(READ);
    let res = signed(
        &s,
        Method::POST,
        "/api/v1/queues/q/resume",
        &cookie(READ),
        Some(&csrf),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!s.db.client.queue_status("q").await.unwrap().is_active);
    // a garbage cookie is no session
    let res = signed(
        &s,
        Method::GET,
        "/api/v1/queues",
        "fetchq_session=zz; other=1",
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

const HOSTILE: [&str; 6] = [
    "<script>window.__xss=1</script>",
    "\"><img src=x onerror=\"window.__xss=1\">",
    "'; alert(1); '",
    "../../etc/passwd",
    "a/b?c=d&e#f %20 +",
    "ünïcødé ✓ 🦀",
];

#[tokio::test]
async fn user_data_is_escaped_on_every_page() {
    let s = Server::start().await;
    let c = &s.db.client;
    c.queue_create("q").await.unwrap();
    for (i, subject) in HOSTILE.iter().enumerate() {
        c.push(
            "q",
            &NewDoc::new(*subject).payload(serde_json::json!({ "html": subject, "i": i })),
        )
        .await
        .unwrap();
        c.log_error(
            "q",
            subject,
            subject,
            Some(&serde_json::json!({ "x": subject })),
            Some(subject),
        )
        .await
        .unwrap();
    }
    let mut pages = vec![
        "/".to_owned(),
        "/console/queues/q".to_owned(),
        "/console/queues/q/docs".to_owned(),
        "/console/queues/q/docs?prefix=%3Cscript%3E".to_owned(),
        "/console/queues/q/push".to_owned(),
    ];
    for subject in HOSTILE {
        let enc: String = subject.bytes().map(|b| format!("%{b:02X}")).collect();
        pages.push(format!("/console/queues/q/doc?subject={enc}"));
    }
    for p in &pages {
        let (status, html) = page(&s, p, READ).await;
        assert_eq!(status, StatusCode::OK, "{p}: {html}");
        assert!(
            !html.contains("<script>window"),
            "{p} let a script tag through"
        );
        assert!(!html.contains("<img src=x"), "{p} let an img tag through");
    }
    let (_, html) = page(
        &s,
        "/console/queues/q/doc?subject=%3Cscript%3Ewindow.__xss%3D1%3C%2Fscript%3E",
        READ,
    )
    .await;
    assert!(
        html.contains("&lt;script&gt;window.__xss=1&lt;/script&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn pages_answer_404_and_400_as_pages_and_carry_security_headers() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    for (path, want) in [
        ("/console/queues/nope", StatusCode::NOT_FOUND),
        ("/console/queues/Bad-Name", StatusCode::NOT_FOUND),
        ("/console/queues/q/doc?subject=nope", StatusCode::NOT_FOUND),
        ("/console/queues/q/doc?subject=", StatusCode::BAD_REQUEST),
        (
            "/console/queues/q/docs?status=zombie",
            StatusCode::BAD_REQUEST,
        ),
        ("/console/queues/q/docs?version=-1", StatusCode::BAD_REQUEST),
        ("/console/queues/q/docs?version=x", StatusCode::BAD_REQUEST),
        ("/console/queues/nope/push", StatusCode::NOT_FOUND),
    ] {
        let (status, html) = page(&s, path, ADMIN).await;
        assert_eq!(status, want, "{path}");
        assert!(html.contains("<!DOCTYPE html>"), "{path}");
    }
    let res = no_redirects()
        .get(s.url("/console/queues/q"))
        .header(COOKIE, cookie(READ))
        .send()
        .await
        .unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    // a read session sees the action buttons disabled
    assert!(html.contains("read-only"));
}

#[tokio::test]
async fn bulk_counts_are_bounded_and_exact() {
    let s = Server::start().await;
    let c = &s.db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..250).map(|i| NewDoc::new(format!("d{i:03}"))).collect();
    c.push_many("q", &docs).await.unwrap();
    c.force_kill("q", "d007").await.unwrap();
    let (status, body) = s.get("/api/v1/queues/q/docs:count?status=dead", READ).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({ "matched": 1, "capped": false }));
    let (_, body) = s.get("/api/v1/queues/q/docs:count?cap=100", READ).await;
    assert_eq!(body, serde_json::json!({ "matched": 100, "capped": true }));
    let (_, body) = s
        .get("/api/v1/queues/q/docs:count?subject_prefix=d1", READ)
        .await;
    assert_eq!(body["matched"], 100);
    for bad in ["cap=0", "cap=1000001", "status=zombie", "version=-1"] {
        let (status, _) = s
            .get(&format!("/api/v1/queues/q/docs:count?{bad}"), READ)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = s.get("/api/v1/queues/nope/docs:count", READ).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(c.get("q", "d007").await.unwrap().status, Status::Dead);
}

#[tokio::test]
async fn only_tokens_that_can_read_open_the_console() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    s.db.client
        .push(
            "q",
            &NewDoc::new("secret-doc").payload(serde_json::json!({ "card": "4111" })),
        )
        .await
        .unwrap();
    let http = no_redirects();
    // signing in with a push-only or work-only token is refused
    for token in [common::PUSH, common::WORK, common::WORKER] {
        let res = http
            .get(s.url(&format!("/login?token={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{token}");
        assert!(res.headers().get(SET_COOKIE).is_none());
        // and such a cookie, made by hand, opens no page
        for path in [
            "/",
            "/console/parts/queues",
            "/console/queues/q/doc?subject=secret-doc",
        ] {
            let res = http
                .get(s.url(path))
                .header(ACCEPT, "text/html")
                .header(COOKIE, cookie(token))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "{token} {path}");
            assert!(!res.text().await.unwrap().contains("4111"));
        }
    }
}

#[tokio::test]
async fn sign_in_links_and_forms_from_another_site_do_nothing() {
    let s = Server::start().await;
    let http = no_redirects();
    let res = http
        .get(s.url(&format!("/?token={READ}")))
        .header(ACCEPT, "text/html")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the form, not a session");
    assert!(res.headers().get(SET_COOKIE).is_none());
    let res = http
        .post(s.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[("token", READ)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get(SET_COOKIE).is_none());
    // the same from the server's own page works
    let res = http
        .post(s.url("/login"))
        .header("origin", format!("http://{}", s.addr))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", READ)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.headers().get(SET_COOKIE).is_some());
}

#[tokio::test]
async fn the_next_page_and_the_bulk_form_keep_every_filter() {
    let s = Server::start().await;
    let c = &s.db.client;
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..120)
        .map(|i| NewDoc::new(format!("{}{i:03}", if i % 2 == 0 { "a/" } else { "b/" })))
        .collect();
    c.push_many("q", &docs).await.unwrap();
    let (_, html) = page(
        &s,
        "/console/queues/q/docs?status=pending&prefix=a%2F",
        READ,
    )
    .await;
    let next = html
        .split("id=\"next\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a next page link")
        .replace("&amp;", "&");
    assert!(
        next.contains("prefix=a%2F") && next.contains("status=pending"),
        "{next}"
    );
    assert!(
        html.contains("subject_prefix&quot;:&quot;a/"),
        "the bulk filter has the prefix"
    );
    assert!(html.contains("docs:count?status=pending&amp;subject_prefix=a%2F"));
    let (_, page2) = page(&s, &format!("/console/queues/q/docs{next}"), READ).await;
    assert!(
        page2.contains("a/100") && !page2.contains("b/"),
        "page 2 lost the prefix"
    );
    assert!(
        page2.contains("subject_prefix&quot;:&quot;a/"),
        "page 2's bulk filter lost the prefix"
    );
}

#[tokio::test]
async fn bad_query_strings_get_error_pages() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    for path in [
        "/console/queues/q/doc",
        "/console/queues/q?before=abc",
        "/console/queues/q/docs?status=pending&status=dead",
    ] {
        let (status, html) = page(&s, path, READ).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(html.contains("<!DOCTYPE html>"), "{path}: {html}");
    }
}

#[tokio::test]
async fn a_week_of_snapshots_is_charted_to_its_end() {
    let s = Server::start().await;
    s.db.client.queue_create("q").await.unwrap();
    // 800 snapshots over 7 days of 15 metrics each: 12,000 rows, more than
    // one page of metric_history
    sqlx::raw_sql(
        "INSERT INTO fetchq_data.q__metrics (metric, value, created_at)
         SELECT m, n, now() - interval '7 days' + n * interval '12 minutes'
         FROM generate_series(1, 800) AS n,
              unnest(ARRAY['ent','prc','res','rej','orp','pnd','pln','act','cpl','kll','cnt','v0','v1','v2','v3']) AS m",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    let (status, html) = page(&s, "/console/queues/q?range=7d", READ).await;
    assert_eq!(status, StatusCode::OK);
    let most = html
        .split("points=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or("").split(' ').count())
        .max()
        .unwrap();
    assert!(most >= 790, "a chart line has only {most} points");
}
