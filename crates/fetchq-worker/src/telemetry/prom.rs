//! The Prometheus exporter (feature `metrics`) and its small HTTP endpoint.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{BUCKETS, FAMILIES, Kind, Sources, kind_of};

/// The content type of the Prometheus text format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// How often recorded histogram samples are folded into their buckets when
/// nobody scrapes (they are kept one by one until then).
const UPKEEP: Duration = Duration::from_secs(5);

static META: Metadata<'static> =
    Metadata::new("fetchq_worker", metrics::Level::INFO, Some(module_path!()));

/// The runtime's exporter.
pub(crate) struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    sources: Sources,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect::<Vec<_>>(),
    )
}

impl Exporter {
    pub(crate) fn new(sources: Sources) -> Self {
        let builder = PrometheusBuilder::new();
        // set_buckets fails only on an empty list
        let builder = match builder.set_buckets(&BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, kind, help) in FAMILIES {
            let (name, help) = (KeyName::from(*name), SharedString::from(*help));
            match kind {
                Kind::Histogram => recorder.describe_histogram(name, Some(Unit::Seconds), help),
                Kind::Gauge => recorder.describe_gauge(name, None, help),
                Kind::Counter => recorder.describe_counter(name, None, help),
            }
        }
        Exporter {
            recorder,
            handle,
            sources,
        }
    }

    /// The histogram `name{labels}`.
    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> metrics::Histogram {
        self.recorder.register_histogram(&key(name, labels), &META)
    }

    /// The exposition now: the counters copied in, then rendered.
    pub(crate) fn render(&self) -> String {
        self.sources.each(&mut |name, labels, v| {
            if kind_of(name) == Kind::Gauge {
                self.recorder
                    .register_gauge(&key(name, labels), &META)
                    .set(v as f64);
            } else {
                self.recorder
                    .register_counter(&key(name, labels), &META)
                    .absolute(v);
            }
        });
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Serves `GET /metrics` (anything else: 404) on `listener` until `stop`.
pub(crate) async fn serve(listener: TcpListener, exporter: Arc<Exporter>, stop: CancellationToken) {
    let mut upkeep = tokio::time::interval(UPKEEP);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = upkeep.tick() => {
                // bounded memory with no scraper: samples go into buckets
                exporter.handle.run_upkeep();
                continue;
            }
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let exporter = exporter.clone();
                tokio::spawn(async move {
                    let answer =
                        tokio::time::timeout(Duration::from_secs(10), answer(stream, &exporter));
                    if let Ok(Err(e)) = answer.await {
                        tracing::debug!(error = %e, "metrics endpoint: connection failed");
                    }
                });
            }
            Err(e) => {
                // out of file descriptors and the like: do not spin
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

async fn answer(mut stream: TcpStream, exporter: &Exporter) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = exporter.render();
            respond(&mut stream, "200 OK", CONTENT_TYPE, &body).await
        }
        ("HEAD" | "POST" | "PUT" | "DELETE" | "PATCH", "/metrics") => {
            respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await
        }
        _ => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "not found: try /metrics\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
