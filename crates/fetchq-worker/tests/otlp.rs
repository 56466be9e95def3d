//! OTLP export (feature `otlp`): a drain pushed over real OTLP/HTTP to a
//! receiver on a random port, which decodes each request with the
//! OpenTelemetry protocol's own protobuf definitions (`opentelemetry-proto`)
//! and checks names, units, attributes and values; then the hostile cases: a
//! collector that is down, one that never answers, and bad options.

#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fetchq_core::NewDoc;
use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, OtlpOptions, Outcome, Runtime, WorkerError};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{eventually, handler};

/// What the receiver got: (path, content type, decoded request).
type Received = Arc<Mutex<Vec<(String, String, ExportMetricsServiceRequest)>>>;

/// Reads one HTTP/1.1 request (head and Content-Length body); None at EOF.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let len: usize = header("content-length").parse().unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, header("content-type"), body))
}

/// An OTLP/HTTP receiver on a random port: answers 200 to every request
/// and keeps what it decoded.
async fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let keep = keep.clone();
            tokio::spawn(async move {
                while let Some((path, ctype, body)) = read_request(&mut stream).await {
                    let req = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
                    keep.lock().unwrap().push((path, ctype, req));
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, got)
}

/// A collector that accepts connections and never answers; its base URL.
async fn silent_collector() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    base
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn has(attrs: &[KeyValue], want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| attrs.iter().any(|a| a.key == *k && text(&a.value) == *v))
}

/// The metrics named `name` in the newest request that has it.
fn newest<'a>(
    got: &'a [(String, String, ExportMetricsServiceRequest)],
    name: &str,
) -> Option<&'a Metric> {
    got.iter().rev().find_map(|(_, _, req)| {
        req.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == name)
    })
}

/// A cumulative monotonic sum's value for the points having `want`.
fn sum_value(m: &Metric, want: &[(&str, &str)]) -> Option<u64> {
    let Some(metric::Data::Sum(sum)) = &m.data else {
        panic!("{} is not a sum: {:?}", m.name, m.data)
    };
    assert!(sum.is_monotonic, "{}", m.name);
    // 2 = AGGREGATION_TEMPORALITY_CUMULATIVE
    assert_eq!(sum.aggregation_temporality, 2, "{}", m.name);
    sum.data_points
        .iter()
        .filter(|p| has(&p.attributes, want))
        .map(|p| match p.value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => {
                v as u64
            }
            other => panic!("{}: {other:?}", m.name),
        })
        .reduce(|a, b| a + b)
}

#[tokio::test]
async fn the_worker_pushes_its_metrics_over_otlp() {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    // a reject is final (dead): the counts below are exact
    c.queue_set_max_attempts("q", 1).await.unwrap();
    let docs: Vec<NewDoc> = (0..100).map(|i| NewDoc::new(format!("d{i}"))).collect();
    c.push_many("q", &docs).await.unwrap();
    let h = handler(
        HandlerOptions::new("q").named("scraper").concurrency(4),
        |doc, _ctx| {
            Box::pin(async move {
                let n: u32 = doc.subject[1..].parse().unwrap();
                if n.is_multiple_of(25) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if n % 10 == 1 {
                    return Ok(Outcome::reject("nope"));
                }
                Ok(Outcome::complete())
            })
        },
    );
    let (base, got) = receiver().await;
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .otlp(
            OtlpOptions::new()
                .endpoint(base.as_str())
                .interval(Duration::from_millis(200))
                .service_name("otlp-test")
                .header("x-tenant", "fetchq"),
        )
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    let outcome = |got: &Received, name: &str| {
        let got = got.lock().unwrap();
        newest(&got, "fetchq_worker_outcomes").and_then(|m| {
            sum_value(
                m,
                &[("queue", "q"), ("handler", "scraper"), ("outcome", name)],
            )
        })
    };
    // pushed while it runs, not only at the end
    eventually(Duration::from_secs(60), "90 completes pushed", || async {
        outcome(&got, "complete") == Some(90)
    })
    .await;
    assert!(!run.is_finished());
    stop.cancel();
    run.await.unwrap().unwrap();

    let got = got.lock().unwrap();
    assert!(got.len() >= 2, "one push per interval: {}", got.len());
    for (path, ctype, _) in got.iter() {
        assert_eq!(path, "/v1/metrics");
        assert_eq!(ctype, "application/x-protobuf");
    }
    // the resource names the service and the instance
    let (_, _, last) = got.last().unwrap();
    let resource = last.resource_metrics[0].resource.as_ref().unwrap();
    assert!(has(&resource.attributes, &[("service.name", "otlp-test")]));
    assert!(
        resource
            .attributes
            .iter()
            .any(|a| a.key == "service.instance.id"
                // host:pid, or host:pid:N for the N-th runtime of this process
                && text(&a.value).contains(&format!(":{}", std::process::id())))
    );
    let l = [("queue", "q"), ("handler", "scraper")];
    let counter = |name: &str, extra: &[(&str, &str)]| {
        let want: Vec<_> = l.iter().chain(extra).copied().collect();
        sum_value(newest(&got, name).expect(name), &want).expect(name)
    };
    assert_eq!(counter("fetchq_worker_picked_documents", &[]), 100);
    assert_eq!(
        counter("fetchq_worker_outcomes", &[("outcome", "reject")]),
        10
    );
    assert_eq!(counter("fetchq_worker_lease_losses", &[]), 0);
    assert!(counter("fetchq_worker_picks", &[]) >= 25);
    let runtime_wide = |name: &str| sum_value(newest(&got, name).expect(name), &[]).unwrap();
    assert!(runtime_wide("fetchq_worker_outcome_batches") >= 1);
    // every database activity has its series, 0 here
    let errors = newest(&got, "fetchq_worker_database_errors").unwrap();
    assert_eq!(sum_value(errors, &[("activity", "pick")]), Some(0));
    // the gauge ends at 0 (the last push happens after the drain)
    let in_flight = newest(&got, "fetchq_worker_documents_in_flight").unwrap();
    let Some(metric::Data::Gauge(g)) = &in_flight.data else {
        panic!("{in_flight:?}")
    };
    assert!(g.data_points.iter().any(|p| has(&p.attributes, &l)));
    // the handler duration histogram: seconds, our buckets, every document
    let hist = newest(&got, "fetchq_handler_duration").unwrap();
    assert_eq!(hist.unit, "s");
    let Some(metric::Data::Histogram(hist)) = &hist.data else {
        panic!("{hist:?}")
    };
    assert_eq!(hist.aggregation_temporality, 2);
    let point = |outcome: &str| {
        hist.data_points
            .iter()
            .find(|p| has(&p.attributes, &[l[0], l[1], ("outcome", outcome)]))
            .unwrap_or_else(|| panic!("no {outcome} point"))
    };
    let complete = point("complete");
    assert_eq!(complete.count, 90);
    assert_eq!(point("reject").count, 10);
    assert_eq!(complete.explicit_bounds.len(), 15);
    assert_eq!(complete.explicit_bounds[0], 0.001);
    // the four slow ones (0, 25, 50, 75) ran 0.3 s: above the 0.25 s bound
    let above: u64 = complete
        .explicit_bounds
        .iter()
        .zip(&complete.bucket_counts)
        .filter(|(b, _)| **b > 0.25)
        .map(|(_, n)| n)
        .sum::<u64>()
        + complete.bucket_counts.last().unwrap();
    assert_eq!(above, 4, "{complete:?}");
    assert!(complete.sum.unwrap() >= 1.2);
    let pick = newest(&got, "fetchq_worker_pick_duration").unwrap();
    assert_eq!(pick.unit, "s");
    assert!(newest(&got, "fetchq_worker_outcome_batch_duration").is_some());
    // nothing carries a subject
    for (_, _, req) in got.iter() {
        let text = format!("{req:?}");
        assert!(!text.contains("\"d1\""), "a subject leaked into a label");
    }
}

/// A drain of `n` documents with the given OTLP options; returns how long
/// `run` took to return after shutdown was asked.
async fn drain_with(opts: OtlpOptions, n: usize) -> Duration {
    let db = TestDb::new().await;
    let c = db.client.clone();
    c.queue_create("q").await.unwrap();
    let docs: Vec<NewDoc> = (0..n).map(|i| NewDoc::new(format!("d{i}"))).collect();
    c.push_many("q", &docs).await.unwrap();
    let h = handler(HandlerOptions::new("q").concurrency(4), |_doc, _ctx| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .otlp(opts)
        .register(h);
    let (stop, stats) = (rt.shutdown_token(), rt.stats());
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(60), "drained", || async {
        stats.total().completed == n as u64
    })
    .await;
    let asked = Instant::now();
    stop.cancel();
    run.await.unwrap().unwrap();
    asked.elapsed()
}

#[tokio::test]
async fn a_collector_that_is_down_costs_the_worker_nothing() {
    // a port nobody listens on: every push is refused at once
    let port = common::free_port();
    let opts = OtlpOptions::new()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .interval(Duration::from_millis(100));
    let took = drain_with(opts, 300).await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

#[tokio::test]
async fn a_collector_that_never_answers_does_not_hold_shutdown() {
    let base = silent_collector().await;
    let opts = OtlpOptions::new()
        .endpoint(base)
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(500));
    let took = drain_with(opts, 300).await;
    // the last push is bounded by its timeout (and a second of slack)
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
}

#[tokio::test]
async fn bad_otlp_options_fail_run_with_a_config_error() {
    let db = TestDb::new().await;
    for (opts, says) in [
        (OtlpOptions::new().endpoint("https://collector:4318"), "TLS"),
        (OtlpOptions::new().endpoint("collector:4318"), "http://"),
        (OtlpOptions::new().interval(Duration::ZERO), "interval"),
        (
            OtlpOptions::new().timeout(Duration::from_millis(10)),
            "timeout",
        ),
        (OtlpOptions::new().header("x api key", "k"), "header name"),
        (
            OtlpOptions::new().header(
                "x-tenant", "a
b",
            ),
            "header",
        ),
    ] {
        let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
            Box::pin(async { Ok(Outcome::complete()) })
        });
        let rt = Runtime::new(db.pool.clone())
            .handle_signals(false)
            .otlp(opts)
            .register(h);
        match rt.run().await {
            Err(WorkerError::Config(msg)) => assert!(msg.contains(says), "{msg}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_forced_shutdown_waits_for_no_collector() {
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    // the last push would wait
    let base = silent_collector().await;
    let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .otlp(
            OtlpOptions::new()
                .endpoint(base)
                .interval(Duration::from_millis(100))
                .timeout(Duration::from_secs(30)),
        )
        .register(h);
    let (stop, force) = (rt.shutdown_token(), rt.force_token());
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    stop.cancel();
    force.cancel();
    assert!(matches!(run.await.unwrap(), Err(WorkerError::Forced)));
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "forced shutdown took {took:?}"
    );
}

#[tokio::test]
async fn a_run_that_fails_at_once_pushes_nothing() {
    let (base, got) = receiver().await;
    let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new("not a database url")
        .handle_signals(false)
        .otlp(
            OtlpOptions::new()
                .endpoint(base)
                .interval(Duration::from_millis(100)),
        )
        .register(h);
    assert!(matches!(rt.run().await, Err(WorkerError::Database(_))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().unwrap().len(), 0, "a failed run pushed metrics");
}
