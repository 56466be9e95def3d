//! The runtime's own metrics (feature `metrics`): scraped over real HTTP after
//! a small drain, the series and their values checked, and `promtool check
//! metrics` run on the exposition.

#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use fetchq_core::NewDoc;
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, Outcome, Runtime};

use common::{eventually, handler};

/// Samples by `name{labels}` (labels as written, sorted by the exporter).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn sum_of(s: &BTreeMap<String, f64>, prefix: &str, having: &[&str]) -> f64 {
    s.iter()
        .filter(|(k, _)| k.starts_with(prefix) && having.iter().all(|h| k.contains(h)))
        .map(|(_, v)| *v)
        .sum()
}

async fn get(url: &str) -> (u16, String, String) {
    let res = reqwest::get(url).await.unwrap();
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, res.text().await.unwrap())
}

#[tokio::test]
async fn the_worker_serves_its_metrics_over_http() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    // a reject is final (dead), not retried later: the counts below are exact
    c.queue_set_max_attempts("q", 1).await.unwrap();
    let docs: Vec<NewDoc> = (0..200).map(|i| NewDoc::new(format!("d{i}"))).collect();
    c.push_many("q", &docs).await.unwrap();
    let h = handler(
        HandlerOptions::new("q")
            .named("scraper")
            .concurrency(8)
            .batch(8)
            .lease(Duration::from_millis(300)),
        |doc, _ctx| {
            Box::pin(async move {
                let n: u32 = doc.subject[1..].parse().unwrap();
                if n.is_multiple_of(50) {
                    // outlives half of the lease: heartbeats keep it
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if n % 10 == 1 {
                    return Ok(Outcome::reject("nope"));
                }
                Ok(Outcome::complete())
            })
        },
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .metrics_listener(listener)
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "drained", || async {
        let m = c.metric_compute("q").await.unwrap();
        m.pending == 0 && m.active == 0
    })
    .await;
    // the outcomes are written before their documents leave pending/active;
    // in flight drops right after they are handed over: wait for that
    let url = format!("{base}/metrics");
    let mut text = String::new();
    let gauge = "fetchq_worker_documents_in_flight{queue=\"q\",handler=\"scraper\"}";
    for _ in 0..100 {
        let (status, ctype, body) = get(&url).await;
        assert_eq!(status, 200);
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        text = body;
        if samples(&text).get(gauge) == Some(&0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(samples(&text).get(gauge), Some(&0.0), "{text}");
    let s = samples(&text);
    let l = "queue=\"q\",handler=\"scraper\"";
    assert_eq!(
        s[&format!("fetchq_worker_picked_documents_total{{{l}}}")],
        200.0,
        "{text}"
    );
    assert!(s[&format!("fetchq_worker_picks_total{{{l}}}")] >= 200.0 / 8.0);
    assert_eq!(
        s[&format!("fetchq_worker_outcomes_total{{{l},outcome=\"complete\"}}")],
        180.0
    );
    assert_eq!(
        s[&format!("fetchq_worker_outcomes_total{{{l},outcome=\"reject\"}}")],
        20.0
    );
    assert_eq!(s[&format!("fetchq_worker_lease_losses_total{{{l}}}")], 0.0);
    // the handler duration histogram: every document once, by outcome
    assert_eq!(
        s[&format!("fetchq_handler_duration_seconds_count{{{l},outcome=\"complete\"}}")],
        180.0
    );
    assert_eq!(
        s[&format!("fetchq_handler_duration_seconds_count{{{l},outcome=\"reject\"}}")],
        20.0
    );
    // the four slow ones are above 0.25 s, nothing else is
    let le = |b: &str| {
        s[&format!("fetchq_handler_duration_seconds_bucket{{{l},outcome=\"complete\",le=\"{b}\"}}")]
    };
    assert_eq!(le("+Inf") - le("0.25"), 4.0, "{text}");
    assert!(s[&format!("fetchq_handler_duration_seconds_sum{{{l},outcome=\"complete\"}}")] >= 2.0);
    assert!(sum_of(&s, "fetchq_worker_pick_duration_seconds_count", &[l]) >= 25.0);
    assert!(s["fetchq_worker_heartbeats_total"] >= 1.0, "{text}");
    assert!(s["fetchq_worker_heartbeat_leases_total"] >= 4.0, "{text}");
    let batches = s["fetchq_worker_outcome_batches_total"];
    assert!((1.0..=200.0).contains(&batches), "{text}");
    assert_eq!(
        s["fetchq_worker_outcome_batch_duration_seconds_count"],
        batches
    );
    // labels are bounded: no subject ever appears
    assert!(!text.contains("d1") && !text.contains("subject"), "{text}");
    for family in [
        "fetchq_handler_duration_seconds histogram",
        "fetchq_worker_pick_duration_seconds histogram",
        "fetchq_worker_documents_in_flight gauge",
        "fetchq_worker_picks_total counter",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "{family}\n{text}"
        );
    }
    // anything else is a 404
    assert_eq!(get(&format!("{base}/")).await.0, 404);
    assert_eq!(get(&format!("{base}/metricsx")).await.0, 404);
    fetchq_testing::promtool_check_metrics(None, "the worker", &text);
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_address_that_cannot_be_bound_is_a_config_error() {
    let db = TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    let err = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .metrics_addr(addr.clone())
        .register(h)
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, fetchq_worker::WorkerError::Config(ref m) if m.contains(&addr)),
        "{err}"
    );
}
