//! `GET /metrics`: the Prometheus text format, exact values without a pack,
//! auth, escaping, dropped queues, and `promtool check metrics` when present.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{ADMIN, PUSH, READ, Server, tokens};
use fetchq_core::NewDoc;
use fetchq_server::Config;
use reqwest::StatusCode;

type Labels = BTreeMap<String, String>;

/// A parsed exposition: the TYPE of each family and every sample.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    samples: Vec<(String, Labels, f64)>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
    }

    fn queues(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter_map(|(_, l, _)| l.get("queue").cloned())
            .collect()
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// A strict parser of the text format 0.0.4: names and label names checked,
/// label values unescaped (only `\\`, `\"`, `\n` allowed), HELP and TYPE at
/// most once per family and before its samples, a family's samples
/// contiguous, no series twice. Panics on anything else.
fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    let mut seen_series = BTreeSet::new();
    let mut finished_families: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap();
            let name = parts.next().unwrap_or_default().to_owned();
            let arg = parts.next().unwrap_or_default();
            match kw {
                "HELP" => {
                    assert!(is_name(&name, true), "bad HELP name: {line}");
                    assert!(e.helps.insert(name.clone()), "HELP twice: {line}");
                }
                "TYPE" => {
                    assert!(is_name(&name, true), "bad TYPE name: {line}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg),
                        "bad type: {line}"
                    );
                    assert!(
                        !e.samples.iter().any(|(n, _, _)| *n == name),
                        "TYPE after samples: {line}"
                    );
                    assert!(
                        e.types.insert(name.clone(), arg.to_owned()).is_none(),
                        "TYPE twice: {line}"
                    );
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#') || line.starts_with("# "), "{line}");
        // name
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "bad metric name: {line}");
        let mut rest = &line[name_end..];
        let mut labels = Labels::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let consumed;
            loop {
                // label name or end
                let (start, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("open labels: {line}"));
                if c == '}' {
                    consumed = Some(start + 1);
                    break;
                }
                let mut lname = String::from(c);
                loop {
                    let (_, c) = chars.next().unwrap_or_else(|| panic!("label: {line}"));
                    if c == '=' {
                        break;
                    }
                    lname.push(c);
                }
                assert!(is_name(&lname, false), "bad label name {lname:?}: {line}");
                assert_eq!(
                    chars.next().map(|x| x.1),
                    Some('"'),
                    "label value quote: {line}"
                );
                let mut value = String::new();
                loop {
                    let (_, c) = chars
                        .next()
                        .unwrap_or_else(|| panic!("label value: {line}"));
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|x| x.1) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?}: {line}"),
                        },
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(lname, value).is_none(), "label twice: {line}");
                match chars.next().map(|x| x.1) {
                    Some(',') => {}
                    Some('}') => {
                        consumed = Some(chars.peek().map(|x| x.0).unwrap_or(r.len()));
                        break;
                    }
                    other => panic!("after a label {other:?}: {line}"),
                }
            }
            rest = &r[consumed.unwrap()..];
        }
        let rest = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("space before value: {line}"));
        let mut fields = rest.split(' ');
        let value = fields.next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?}: {line}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp: {line}"));
        }
        assert!(fields.next().is_none(), "trailing fields: {line}");
        // a family's samples are contiguous
        let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|f| e.types.get(*f).map(String::as_str) == Some("histogram"))
        });
        let family = name
            .strip_suffix("_total")
            .filter(|f| e.types.contains_key(*f))
            .or(histogram)
            .unwrap_or(name);
        let family = if e.types.contains_key(name) {
            name
        } else {
            family
        };
        if current.as_deref() != Some(family) {
            if let Some(prev) = current.take() {
                finished_families.insert(prev);
            }
            assert!(!finished_families.contains(family), "family split: {line}");
            current = Some(family.to_owned());
        }
        assert!(
            e.types.contains_key(family) && e.helps.contains(family),
            "sample without TYPE and HELP: {line}"
        );
        assert!(
            seen_series.insert((name.to_owned(), labels.clone())),
            "series twice: {line}"
        );
        e.samples.push((name.to_owned(), labels, value));
    }
    e
}

async fn scrape(s: &Server, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = s.http.get(s.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, res.text().await.unwrap())
}

async fn workload(c: &fetchq_core::Client, q: &str) {
    fetchq_testing::mixed_workload(c, q, 90).await;
}

#[tokio::test]
async fn exposition_parses_and_equals_a_real_count_without_a_pack() {
    let s = Server::start().await;
    let c = &s.db.client;
    workload(c, "q").await;
    c.queue_create("idle").await.unwrap();
    c.queue_pause("idle").await.unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.metrics_writes")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert!(pending > 0, "nothing packed");
    let (st, ctype, text) = scrape(&s, Some(READ)).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let e = parse(&text);
    for (family, kind) in [
        ("fetchq_documents", "gauge"),
        ("fetchq_events_total", "counter"),
        ("fetchq_queue_lag_seconds", "gauge"),
        ("fetchq_queue_paused", "gauge"),
        ("fetchq_queue_error_log_rows", "gauge"),
        ("fetchq_custom", "gauge"),
    ] {
        assert_eq!(
            e.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    let truth = c.metric_compute("q").await.unwrap();
    assert!(truth.dead > 0 && truth.completed > 0 && truth.active > 0);
    let doc = |status| e.get("fetchq_documents", &[("queue", "q"), ("status", status)]);
    assert_eq!(doc("planned"), Some(truth.planned as f64));
    assert_eq!(doc("pending"), Some(truth.pending as f64));
    assert_eq!(doc("active"), Some(truth.active as f64));
    assert_eq!(doc("completed"), Some(truth.completed as f64));
    assert_eq!(doc("dead"), Some(truth.dead as f64));
    let ev = |event| e.get("fetchq_events_total", &[("queue", "q"), ("event", event)]);
    assert_eq!(ev("entered"), Some(90.0));
    assert_eq!(ev("picked"), Some(60.0));
    assert_eq!(ev("killed"), Some(truth.dead as f64));
    assert_eq!(ev("dropped"), Some((90 - truth.total) as f64));
    assert_eq!(ev("rejected"), Some(10.0));
    assert_eq!(ev("rescheduled"), Some(10.0));
    assert_eq!(ev("orphaned"), Some(0.0));
    let processed = truth.completed + truth.dead + (90 - truth.total) + 10;
    assert_eq!(ev("processed"), Some(processed as f64));
    let logs: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq_data.q__logs")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(
        e.get("fetchq_queue_error_log_rows", &[("queue", "q")]),
        Some(logs as f64)
    );
    assert_eq!(e.get("fetchq_queue_paused", &[("queue", "q")]), Some(0.0));
    assert_eq!(
        e.get("fetchq_queue_paused", &[("queue", "idle")]),
        Some(1.0)
    );
    assert_eq!(
        e.get("fetchq_queue_lag_seconds", &[("queue", "idle")]),
        Some(0.0)
    );
    let lag = e
        .get("fetchq_queue_lag_seconds", &[("queue", "q")])
        .unwrap();
    assert!((0.0..3600.0).contains(&lag), "{lag}");
    // an empty queue has every series, at 0
    assert_eq!(
        e.get(
            "fetchq_events_total",
            &[("queue", "idle"), ("event", "entered")]
        ),
        Some(0.0)
    );

    // the JSON metrics of the queue are exact without a pack too
    let (st, m) = s.get("/api/v1/queues/q/metrics", READ).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(m["counters"]["pending"], truth.pending);
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM fetchq.metrics_writes")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert!(still >= pending, "reads pack nothing");
}

#[tokio::test]
async fn a_read_token_is_needed_unless_metrics_are_public() {
    let s = Server::start().await;
    let (st, _, body) = scrape(&s, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let (st, _, _) = scrape(&s, Some("wrong-token")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = scrape(&s, Some(PUSH)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = scrape(&s, Some(ADMIN)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = s
        .http
        .get(s.url(&format!("/metrics?token={READ}")))
        .send()
        .await
        .map(|r| (r.status(), (), ()))
        .unwrap();
    assert_eq!(st, StatusCode::OK);

    let public = Server::with_config(Config {
        tokens: tokens(),
        metrics_public: true,
        ..Config::default()
    })
    .await;
    public.db.client.queue_create("q").await.unwrap();
    let (st, _, text) = scrape(&public, None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(parse(&text).queues().contains("q"));
    // public metrics open nothing else
    let (st, _) = public
        .call(reqwest::Method::GET, "/api/v1/queues", None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn names_are_escaped_and_dropped_queues_disappear() {
    let s = Server::start().await;
    let c = &s.db.client;
    let long = "abcdefghijklmnopqrstuvwxyz_0123456789";
    c.queue_create(long).await.unwrap();
    c.queue_create("gone").await.unwrap();
    let hostile = "a \"quoted\" \\back\\slash\\n\nnew line} x=\"y\" # é";
    c.metric_log_increment(long, hostile, 7).await.unwrap();
    c.metric_log_set(long, "plain_metric", -3).await.unwrap();
    // user counters named like engine state or counters stay custom or apart
    c.metric_log_increment(long, "paused", 5).await.unwrap();
    c.push("gone", &NewDoc::new("x")).await.unwrap();

    let (_, _, text) = scrape(&s, Some(READ)).await;
    let e = parse(&text);
    assert_eq!(
        e.get("fetchq_custom", &[("queue", long), ("metric", hostile)]),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        e.get(
            "fetchq_custom",
            &[("queue", long), ("metric", "plain_metric")]
        ),
        Some(-3.0)
    );
    assert_eq!(
        e.get("fetchq_custom", &[("queue", long), ("metric", "paused")]),
        Some(5.0)
    );
    assert_eq!(e.get("fetchq_queue_paused", &[("queue", long)]), Some(0.0));
    // engine counters are not custom metrics
    assert!(
        !e.samples.iter().any(|(n, l, _)| n == "fetchq_custom"
            && ["cnt", "pnd", "v0", "kld"].contains(&l["metric"].as_str())),
        "{text}"
    );
    assert!(e.queues().contains("gone"));
    assert_eq!(
        e.get(
            "fetchq_documents",
            &[("queue", "gone"), ("status", "pending")]
        ),
        Some(1.0)
    );
    c.queue_drop("gone").await.unwrap();
    let (_, _, text) = scrape(&s, Some(READ)).await;
    let e = parse(&text);
    assert!(!e.queues().contains("gone"), "{text}");
    assert!(e.queues().contains(long));
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        eprintln!("NOTE: promtool not found (apt-get install prometheus): promtool check skipped");
        return;
    };
    assert!(out.status.success());
    let s = Server::start().await;
    let c = &s.db.client;
    workload(c, "q").await;
    c.metric_log_increment("q", "weird \"name\"\\\n", 2)
        .await
        .unwrap();
    c.metric_log_increment("q", "profiles_404", 2)
        .await
        .unwrap();
    c.metric_time("q", "fetch.profile-ms", std::time::Duration::from_millis(3))
        .await
        .unwrap();
    let (_, _, text) = scrape(&s, Some(READ)).await;
    assert!(text.contains("fetchq_timer_seconds_bucket{"), "{text}");
    assert!(fetchq_testing::promtool_check_metrics(
        None,
        "fetchq serve",
        &text
    ));
}

#[tokio::test]
async fn timers_are_histograms_in_seconds_and_in_the_queue_metrics() {
    let s = Server::start().await;
    let c = &s.db.client;
    c.queue_create("q").await.unwrap();
    c.queue_create("other").await.unwrap();
    let ms = |n: u64| std::time::Duration::from_millis(n);
    for t in [1, 3, 3, 40, 70_000] {
        c.metric_time("q", "fetch_profile", ms(t)).await.unwrap();
    }
    c.metric_time("other", "x", ms(1)).await.unwrap();
    // a timer of a queue that does not exist is not exported
    c.metric_time("ghost", "x", ms(1)).await.unwrap();
    let (st, _, text) = scrape(&s, Some(READ)).await;
    assert_eq!(st, StatusCode::OK);
    let e = parse(&text);
    assert_eq!(
        e.types.get("fetchq_timer_seconds").map(String::as_str),
        Some("histogram")
    );
    let l = |le: &'static str| [("queue", "q"), ("timer", "fetch_profile"), ("le", le)];
    let bucket = |le| e.get("fetchq_timer_seconds_bucket", &l(le));
    assert_eq!(bucket("0.001"), Some(1.0));
    assert_eq!(bucket("0.0025"), Some(1.0));
    assert_eq!(bucket("0.005"), Some(3.0));
    assert_eq!(bucket("0.05"), Some(4.0));
    assert_eq!(bucket("60"), Some(4.0));
    assert_eq!(bucket("+Inf"), Some(5.0));
    let lt = [("queue", "q"), ("timer", "fetch_profile")];
    assert_eq!(e.get("fetchq_timer_seconds_count", &lt), Some(5.0));
    let sum = e.get("fetchq_timer_seconds_sum", &lt).unwrap();
    assert!((sum - 70.047).abs() < 1e-9, "{sum}");
    assert!(!e.queues().contains("ghost"));
    // the timer's counters are not shown as custom metrics
    assert!(!text.contains("~t/"), "{text}");
    // and in the JSON metrics of the queue
    let (st, m) = s.get("/api/v1/queues/q/metrics", READ).await;
    assert_eq!(st, StatusCode::OK);
    let timers = m["timers"].as_array().unwrap();
    assert_eq!(timers.len(), 1, "{m}");
    assert_eq!(timers[0]["name"], "fetch_profile");
    assert_eq!(timers[0]["count"], 5);
    assert_eq!(timers[0]["sum_ms"], 70_047.0);
    let buckets = timers[0]["buckets"].as_array().unwrap();
    assert_eq!(buckets[0]["le_ms"], 1.0);
    assert_eq!(buckets[0]["count"], 1);
    assert_eq!(buckets.last().unwrap()["le_ms"], serde_json::Value::Null);
    assert_eq!(buckets.last().unwrap()["count"], 5);
}
