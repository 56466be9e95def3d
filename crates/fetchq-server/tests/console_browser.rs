//! The console in a real headless Chromium: sign in, watch counts change,
//! filter, open a document, play, kill, pause, push, bulk; a read token
//! cannot act; injected subjects render as text; a phone-sized screen works.
//! Also takes the README's screenshots (FETCHQ_UPDATE_SCREENSHOTS=1 writes
//! them to docs/).

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod chromium;
mod common;

use std::time::Duration;

use chromium::Browser;
use common::{ADMIN, READ, Server};
use fetchq_core::{NewDoc, Schedule, Status};
use serde_json::json;

fn doc_url(s: &Server, queue: &str, subject: &str) -> String {
    let enc: String = subject.bytes().map(|b| format!("%{b:02X}")).collect();
    s.url(&format!("/console/queues/{queue}/doc?subject={enc}"))
}

#[tokio::test]
async fn an_admin_signs_in_watches_filters_and_acts() {
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let s = Server::start().await;
    let c = &s.db.client;
    c.queue_create("crawl").await.unwrap();
    for i in 0..3 {
        c.push("crawl", &NewDoc::new(format!("https://example.com/a/{i}")))
            .await
            .unwrap();
    }
    c.push(
        "crawl",
        &NewDoc::new("https://other.org/x").at(Schedule::after(Duration::from_secs(3600))),
    )
    .await
    .unwrap();

    // the URL fetchq serve prints signs in and leaves the address bar clean
    b.goto(&s.url(&format!("/?token={ADMIN}"))).await;
    assert_eq!(b.path().await, "/");
    let pending = "tr[data-queue='crawl'] td[data-col='pending']";
    assert_eq!(b.text(pending).await, "3");
    assert_eq!(
        b.text("tr[data-queue='crawl'] td[data-col='planned']")
            .await,
        "1"
    );

    // counts change on their own, without a reload
    b.js("window.__same_page = 1; return null;").await;
    let more: Vec<NewDoc> = (3..8)
        .map(|i| NewDoc::new(format!("https://example.com/a/{i}")))
        .collect();
    c.push_many("crawl", &more).await.unwrap();
    b.wait_text(pending, |t| t == "8").await;
    assert_eq!(
        b.js("return window.__same_page;").await,
        json!(1),
        "the page reloaded"
    );

    // filter the documents by prefix
    b.click("tr[data-queue='crawl'] th a").await;
    b.wait_text("h1", |t| t.starts_with("crawl")).await;
    b.click("a.button[href$='/docs']").await;
    b.fill("form.filters input[name='prefix']", "https://other")
        .await;
    b.click("form.filters button[type='submit']").await;
    b.wait_text("table.docs tbody", |t| {
        t.contains("https://other.org/x") && !t.contains("example.com")
    })
    .await;

    // open it, play it (planned -> pending), kill it (two clicks)
    b.click("table.docs td.subject a").await;
    b.wait_text("#status", |t| t == "planned").await;
    assert_eq!(b.text("#subject").await, "https://other.org/x");
    b.click("#play").await;
    b.wait_text("#status", |t| t == "pending").await;
    assert_eq!(
        c.get("crawl", "https://other.org/x").await.unwrap().status,
        Status::Pending
    );
    b.click("#kill").await;
    b.wait_text("#kill", |t| t.contains("again")).await;
    assert_eq!(
        c.get("crawl", "https://other.org/x").await.unwrap().status,
        Status::Pending,
        "one click must not kill"
    );
    b.click("#kill").await;
    b.wait_text("#status", |t| t == "dead").await;

    // bulk over a filter: the count first, then the action
    b.goto(&s.url("/console/queues/crawl/docs?status=dead"))
        .await;
    b.click("#bulk button[type='submit']").await;
    let said = b.wait_text("#bulk .count", |t| !t.is_empty()).await;
    assert!(said.contains("play 1 document"), "{said}");
    b.click("#bulk [data-role='go']").await;
    b.wait_text("table.docs tbody", |t| t.contains("No document matches"))
        .await;
    assert_eq!(
        c.get("crawl", "https://other.org/x").await.unwrap().status,
        Status::Pending
    );

    // push from the form, land on the new document
    b.goto(&s.url("/console/queues/crawl/push")).await;
    b.fill("#push input[name='subject']", "pushed/from <the> form")
        .await;
    b.fill("#push input[name='priority']", "7").await;
    b.fill(
        "#push textarea[name='payload']",
        r#"{"url": "https://example.com/p", "depth": 2}"#,
    )
    .await;
    b.click("#push button[type='submit']").await;
    b.wait_text("#subject", |t| t == "pushed/from <the> form")
        .await;
    assert!(b.text("#payload").await.contains("\"depth\": 2"));
    let d = c.get("crawl", "pushed/from <the> form").await.unwrap();
    assert_eq!((d.priority, d.payload["depth"].clone()), (7, json!(2)));

    // reschedule it in 2 hours, then drop it (two clicks) and land on the list
    b.fill("form.reschedule input[name='delay']", "2h").await;
    b.click("form.reschedule button[type='submit']").await;
    b.wait_text("#status", |t| t == "planned").await;
    let planned = c.get("crawl", "pushed/from <the> form").await.unwrap();
    let ahead = planned.next_iteration - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::minutes(110) && ahead < chrono::Duration::minutes(121),
        "{ahead}"
    );
    b.click("#drop").await;
    b.wait_text("#drop", |t| t.contains("again")).await;
    b.click("#drop").await;
    b.wait_text("h1", |t| t.ends_with("/ documents")).await;
    assert!(matches!(
        c.get("crawl", "pushed/from <the> form").await,
        Err(fetchq_core::Error::NotFound { .. })
    ));

    // pause the queue (two clicks), then the settings form
    b.goto(&s.url("/console/queues/crawl")).await;
    b.click("#pause").await;
    b.click("#pause").await;
    b.wait_text("h1", |t| t.contains("paused")).await;
    assert!(!c.queue_status("crawl").await.unwrap().is_active);
    b.fill("form.settings input[name='max_attempts']", "9")
        .await;
    b.mark().await;
    b.click("form.settings button[type='submit']").await;
    b.wait_reload().await;
    assert_eq!(c.queue_status("crawl").await.unwrap().max_attempts, 9);
    // a bad value is refused with the API's message and changes nothing
    b.fill("form.settings input[name='logs_retention']", "forever")
        .await;
    b.click("form.settings button[type='submit']").await;
    b.wait_text("#flash", |t| t.contains("logs_retention"))
        .await;
    assert_eq!(c.queue_status("crawl").await.unwrap().max_attempts, 9);
    b.close().await;
}

#[tokio::test]
async fn a_read_token_sees_but_cannot_act_and_subjects_are_text() {
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let s = Server::start().await;
    let c = &s.db.client;
    c.queue_create("q").await.unwrap();
    let evil = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";
    c.push(
        "q",
        &NewDoc::new(evil).payload(json!({ "html": "<script>window.__xss=3</script>" })),
    )
    .await
    .unwrap();

    b.goto(&s.url(&format!("/?token={READ}"))).await;
    assert_eq!(b.text(".who .badge").await, "read-only");
    b.goto(&doc_url(&s, "q", evil)).await;
    assert_eq!(b.text("#subject").await, evil, "the subject shows as text");
    assert!(
        b.text("#payload")
            .await
            .contains("<script>window.__xss=3</script>")
    );
    assert_eq!(
        b.js("return window.__xss === undefined;").await,
        json!(true),
        "injected markup ran"
    );
    for button in ["#play", "#kill", "#drop", "form.reschedule button"] {
        assert!(
            b.disabled(button).await,
            "{button} is enabled for a read token"
        );
    }
    // even a forged call from the page is refused by the API
    let status = b
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const csrf = document.querySelector('meta[name="csrf-token"]').content;
               fetch('/api/v1/queues/q/pause', { method: 'POST', headers: { 'X-CSRF-Token': csrf } })
                 .then(r => done(r.status));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert!(c.queue_status("q").await.unwrap().is_active);
    b.goto(&s.url("/console/queues/q")).await;
    assert!(b.disabled("#pause").await);
    assert!(b.disabled("form.settings button").await);
    b.goto(&s.url("/console/queues/q/docs")).await;
    assert!(b.disabled("#bulk button[type='submit']").await);
    assert!(b.text("table.docs tbody").await.contains(evil));
    assert_eq!(
        b.js("return window.__xss === undefined;").await,
        json!(true)
    );
    b.close().await;
}

/// Demo-like data: a crawler queue with documents in every status, errors,
/// and a few metric snapshots for the charts.
async fn demo_data(s: &Server) {
    let c = &s.db.client;
    for q in ["crawl", "index", "mailer"] {
        c.queue_create(q).await.unwrap();
    }
    let docs: Vec<NewDoc> = (0..600)
        .map(|i| {
            NewDoc::new(format!("https://example.com/page/{i:04}"))
                .priority(i % 3)
                .payload(
                    json!({ "url": format!("https://example.com/page/{i:04}"), "depth": i % 4 }),
                )
        })
        .collect();
    c.push_many("crawl", &docs).await.unwrap();
    let later: Vec<NewDoc> = (0..120)
        .map(|i| {
            NewDoc::new(format!("https://example.org/later/{i}"))
                .at(Schedule::after(Duration::from_secs(3600)))
        })
        .collect();
    c.push_many("crawl", &later).await.unwrap();
    let mail: Vec<NewDoc> = (0..40)
        .map(|i| NewDoc::new(format!("user-{i}@example.com")))
        .collect();
    c.push_many("mailer", &mail).await.unwrap();
    c.push_many("index", &docs[..200]).await.unwrap();
    for round in 0..4 {
        c.metric_snap("crawl").await.unwrap();
        let picked = c
            .pick("crawl", &fetchq_core::PickOptions::new().limit(60))
            .await
            .unwrap();
        for (i, d) in picked.iter().enumerate() {
            if i % 10 == 0 {
                c.reject(
                    &d.lease,
                    "HTTP 503 from origin",
                    Some(&json!({ "status": 503, "round": round })),
                    Some("worker-1"),
                )
                .await
                .unwrap();
            } else {
                c.complete(&d.lease, None).await.unwrap();
            }
        }
    }
    // an hour of history before now, as the sts job would have written it
    // every 5 minutes (cumulative counters below the real ones)
    let bumps = [9, 14, 12, 18, 15, 11, 16, 19, 13, 17, 12, 14];
    let (mut ent, mut prc, mut rej) = (300i64, 0i64, 0i64);
    for (k, bump) in bumps.iter().enumerate() {
        let at = chrono::Utc::now() - chrono::Duration::minutes(60 - 5 * k as i64);
        ent += bump * 2;
        prc += bump;
        rej += bump / 6;
        let rows = [
            ("ent", ent),
            ("prc", prc),
            ("rej", rej),
            ("res", prc / 9),
            ("orp", k as i64 / 5),
            ("pnd", 600 - 20 * k as i64),
            ("pln", 120 + 2 * k as i64),
            ("act", bump % 7),
            ("cpl", prc),
            ("kll", k as i64 / 8),
        ];
        for (metric, value) in rows {
            sqlx::query("INSERT INTO fetchq_data.crawl__metrics (metric, value, created_at) VALUES ($1, $2, $3)")
                .bind(metric)
                .bind(value)
                .bind(at)
                .execute(&s.db.pool)
                .await
                .unwrap();
        }
    }
    c.force_kill("crawl", "https://example.com/page/0042")
        .await
        .unwrap();
    c.metric_snap("crawl").await.unwrap();
}

#[tokio::test]
async fn screenshots_and_a_phone_sized_screen() {
    let Some(b) = Browser::start(1280, 800).await else {
        return;
    };
    let s = Server::start().await;
    demo_data(&s).await;
    b.goto(&s.url(&format!("/?token={ADMIN}"))).await;
    b.wait_text("tr[data-queue='crawl'] td[data-col='completed']", |t| {
        t != "0"
    })
    .await;
    // the throughput column fills at the first refresh
    b.wait_text("tr[data-queue='crawl'] td[data-col='throughput']", |t| {
        t != "…"
    })
    .await;
    let overview = b.screenshot().await;
    b.goto(&doc_url(&s, "crawl", "https://example.com/page/0042"))
        .await;
    b.wait_text("#status", |t| t == "dead").await;
    let document = b.screenshot().await;
    for png in [&overview, &document] {
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "not a real screenshot"
        );
    }
    // the queue page draws its charts from the snapshots
    b.goto(&s.url("/console/queues/crawl?range=1h")).await;
    let queue = b.screenshot().await;
    if std::env::var("FETCHQ_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("console-overview.png"), &overview).unwrap();
        std::fs::write(docs.join("console-document.png"), &document).unwrap();
        std::fs::write(docs.join("console-queue.png"), &queue).unwrap();
    }
    let lines = b
        .js("return [...document.querySelectorAll('figure.chart polyline')].filter(l => l.points.length > 5).length;")
        .await;
    assert_eq!(
        lines,
        json!(10),
        "every series of both charts has its points"
    );
    assert!(b.text("#errors").await.contains("HTTP 503 from origin"));

    // a phone: nothing wider than the screen but the scrolling tables
    b.client.set_window_size(390, 844).await.unwrap();
    for path in [
        "/",
        "/console/queues/crawl",
        "/console/queues/crawl/docs",
        "/console/queues/crawl/push",
    ] {
        b.goto(&s.url(path)).await;
        b.wait_text("h1", |t| !t.is_empty()).await;
        let fits = b
            .js("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
            .await;
        assert_eq!(fits, json!(true), "{path} is wider than a phone");
    }
    b.close().await;
}
