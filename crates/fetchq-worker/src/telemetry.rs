//! The runtime's process metrics. Counters are plain atomics, always kept
//! (the handlers' [`Counters`], the runtime's [`RuntimeCounters`], the
//! database errors of [`Incidents`]) and copied into the exporter at scrape
//! time, so they cost nothing more when metrics are on; histograms (handler
//! duration, pick and outcome-batch latency) are recorded only when the
//! `metrics` feature is on and [`Runtime::metrics_addr`](crate::Runtime) is
//! set. The exporter is the `metrics` crate's recorder interface over
//! `metrics-exporter-prometheus`, owned by the runtime (not installed as the
//! process's global recorder, so runtimes in one process do not mix).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::stats::{Counters, bump};

/// Counters of the runtime as a whole.
#[derive(Debug, Default)]
pub(crate) struct RuntimeCounters {
    /// Lease extension round trips.
    pub(crate) heartbeats: AtomicU64,
    /// Leases extended.
    pub(crate) heartbeat_leases: AtomicU64,
    /// Outcome write batches.
    pub(crate) outcome_batches: AtomicU64,
}

/// What the runtime's activities report to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Telemetry {
    pub(crate) counters: Arc<RuntimeCounters>,
    #[cfg(feature = "metrics")]
    pub(crate) exporter: Option<Arc<prom::Exporter>>,
}

impl Telemetry {
    /// Gets a handler's histograms ready (when exporting).
    pub(crate) fn attach(&self, counters: &Counters, queue: &str, handler: &str) {
        let _ = counters.queue.set(queue.to_owned());
        #[cfg(feature = "metrics")]
        if let Some(e) = &self.exporter {
            let _ = counters.histograms.set(e.handler(queue, handler));
        }
        #[cfg(not(feature = "metrics"))]
        let _ = handler;
    }

    /// A pick round trip took `elapsed`.
    pub(crate) fn picked(&self, counters: &Counters, elapsed: Duration) {
        bump(&counters.picks, 1);
        #[cfg(feature = "metrics")]
        if let Some(h) = counters.histograms.get() {
            h.pick.record(elapsed.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = elapsed;
    }

    /// A handler returned `outcome` after `elapsed`.
    pub(crate) fn handled(&self, counters: &Counters, outcome: &'static str, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(h) = counters.histograms.get() {
            h.duration(outcome).record(elapsed.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (counters, outcome, elapsed);
    }

    /// A heartbeat round trip for `leases` leases.
    pub(crate) fn heartbeat(&self, leases: usize) {
        bump(&self.counters.heartbeats, 1);
        bump(&self.counters.heartbeat_leases, leases as u64);
    }

    /// An outcome batch was written in `elapsed`.
    pub(crate) fn outcome_batch(&self, elapsed: Duration) {
        bump(&self.counters.outcome_batches, 1);
        #[cfg(feature = "metrics")]
        if let Some(e) = &self.exporter {
            e.outcome_batch.record(elapsed.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = elapsed;
    }
}

#[cfg(feature = "metrics")]
pub(crate) mod prom {
    //! The Prometheus exporter and its small HTTP endpoint.

    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use metrics::{Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    use super::RuntimeCounters;
    use crate::stats::Stats;
    use crate::trouble::Incidents;

    /// Histogram buckets, in seconds: 1 ms to 60 s.
    const BUCKETS: [f64; 15] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];

    /// The outcome labels of `fetchq_handler_duration_seconds`, as [`crate::Outcome::kind`] names them.
    const OUTCOMES: [&str; 6] = [
        "complete",
        "reschedule",
        "reject",
        "kill",
        "drop",
        "migrate",
    ];

    /// The content type of the Prometheus text format 0.0.4.
    const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

    /// The largest request head read.
    const MAX_REQUEST: usize = 8 * 1024;

    static META: Metadata<'static> =
        Metadata::new("fetchq_worker", metrics::Level::INFO, Some(module_path!()));

    /// One handler's histograms, registered once.
    #[derive(Debug)]
    pub(crate) struct HandlerHistograms {
        durations: [Histogram; 6],
        pub(crate) pick: Histogram,
    }

    impl HandlerHistograms {
        pub(crate) fn duration(&self, outcome: &str) -> &Histogram {
            let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(2);
            &self.durations[i]
        }
    }

    /// The runtime's exporter.
    pub(crate) struct Exporter {
        recorder: PrometheusRecorder,
        handle: PrometheusHandle,
        stats: Stats,
        incidents: Incidents,
        runtime: std::sync::Arc<RuntimeCounters>,
        pub(crate) outcome_batch: Histogram,
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

    /// Every family: (name, kind, unit, help).
    const FAMILIES: &[(&str, char, Option<Unit>, &str)] = &[
        (
            "fetchq_handler_duration_seconds",
            'h',
            Some(Unit::Seconds),
            "How long handlers ran, by queue, handler and outcome.",
        ),
        (
            "fetchq_worker_pick_duration_seconds",
            'h',
            Some(Unit::Seconds),
            "How long a pick round trip took.",
        ),
        (
            "fetchq_worker_outcome_batch_duration_seconds",
            'h',
            Some(Unit::Seconds),
            "How long writing one batch of outcomes took.",
        ),
        (
            "fetchq_worker_documents_in_flight",
            'g',
            None,
            "Documents picked and not yet handed over for writing.",
        ),
        (
            "fetchq_worker_picks_total",
            'c',
            None,
            "Pick round trips (empty ones included).",
        ),
        (
            "fetchq_worker_picked_documents_total",
            'c',
            None,
            "Documents picked.",
        ),
        (
            "fetchq_worker_outcomes_total",
            'c',
            None,
            "Outcomes written, by outcome.",
        ),
        (
            "fetchq_worker_handler_failures_total",
            'c',
            None,
            "Handler errors, panics (reason=error) and max-runtime cancellations (reason=timeout).",
        ),
        (
            "fetchq_worker_lease_losses_total",
            'c',
            None,
            "Documents whose lease was lost: their results were discarded.",
        ),
        (
            "fetchq_worker_released_total",
            'c',
            None,
            "Documents given back at shutdown.",
        ),
        (
            "fetchq_worker_refused_outcomes_total",
            'c',
            None,
            "Outcomes the database refused for good.",
        ),
        (
            "fetchq_worker_heartbeats_total",
            'c',
            None,
            "Lease extension round trips.",
        ),
        (
            "fetchq_worker_heartbeat_leases_total",
            'c',
            None,
            "Leases extended by heartbeats.",
        ),
        (
            "fetchq_worker_outcome_batches_total",
            'c',
            None,
            "Outcome write batches.",
        ),
        (
            "fetchq_worker_database_errors_total",
            'c',
            None,
            "Database errors met, by activity (retried with backoff).",
        ),
    ];

    impl Exporter {
        pub(crate) fn new(
            stats: Stats,
            incidents: Incidents,
            runtime: std::sync::Arc<RuntimeCounters>,
        ) -> Self {
            let builder = PrometheusBuilder::new();
            // set_buckets fails only on an empty list
            let builder = match builder.set_buckets(&BUCKETS) {
                Ok(b) => b,
                Err(_) => PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            for (name, kind, unit, help) in FAMILIES {
                let (name, help) = (KeyName::from(*name), SharedString::from(*help));
                match kind {
                    'h' => recorder.describe_histogram(name, *unit, help),
                    'g' => recorder.describe_gauge(name, *unit, help),
                    _ => recorder.describe_counter(name, *unit, help),
                }
            }
            let outcome_batch = recorder.register_histogram(
                &key("fetchq_worker_outcome_batch_duration_seconds", &[]),
                &META,
            );
            Exporter {
                recorder,
                handle,
                stats,
                incidents,
                runtime,
                outcome_batch,
            }
        }

        pub(crate) fn handler(&self, queue: &str, handler: &str) -> HandlerHistograms {
            let reg = |name, outcome: Option<&str>| {
                let mut labels = vec![("queue", queue), ("handler", handler)];
                if let Some(o) = outcome {
                    labels.push(("outcome", o));
                }
                self.recorder.register_histogram(&key(name, &labels), &META)
            };
            HandlerHistograms {
                durations: OUTCOMES.map(|o| reg("fetchq_handler_duration_seconds", Some(o))),
                pick: reg("fetchq_worker_pick_duration_seconds", None),
            }
        }

        /// The exposition now: the counters copied in, then rendered.
        pub(crate) fn render(&self) -> String {
            let counter = |name, labels: &[(&'static str, &str)], v: u64| {
                self.recorder
                    .register_counter(&key(name, labels), &META)
                    .absolute(v);
            };
            for (handler, c) in self.stats.handlers() {
                let Some(queue) = c.queue.get() else { continue };
                let l = [("queue", queue.as_str()), ("handler", handler.as_str())];
                let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                self.recorder
                    .register_gauge(&key("fetchq_worker_documents_in_flight", &l), &META)
                    .set(get(&c.in_flight) as f64);
                counter("fetchq_worker_picks_total", &l, get(&c.picks));
                counter("fetchq_worker_picked_documents_total", &l, get(&c.picked));
                counter("fetchq_worker_lease_losses_total", &l, get(&c.lease_lost));
                counter("fetchq_worker_released_total", &l, get(&c.released));
                counter("fetchq_worker_refused_outcomes_total", &l, get(&c.refused));
                for (reason, v) in [("error", &c.failed), ("timeout", &c.timed_out)] {
                    let l = [l[0], l[1], ("reason", reason)];
                    counter("fetchq_worker_handler_failures_total", &l, get(v));
                }
                for (outcome, v) in [
                    ("complete", &c.completed),
                    ("reschedule", &c.rescheduled),
                    ("reject", &c.rejected),
                    ("kill", &c.killed),
                    ("drop", &c.dropped),
                    ("migrate", &c.migrated),
                ] {
                    let l = [l[0], l[1], ("outcome", outcome)];
                    counter("fetchq_worker_outcomes_total", &l, get(v));
                }
            }
            let r = &self.runtime;
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            counter("fetchq_worker_heartbeats_total", &[], get(&r.heartbeats));
            counter(
                "fetchq_worker_heartbeat_leases_total",
                &[],
                get(&r.heartbeat_leases),
            );
            counter(
                "fetchq_worker_outcome_batches_total",
                &[],
                get(&r.outcome_batches),
            );
            // every activity, 0 until it fails: a board's query finds the series
            let errors = self.incidents.errors_by_activity();
            for activity in crate::trouble::ACTIVITIES {
                if !errors.iter().any(|(a, _)| *a == activity) {
                    counter(
                        "fetchq_worker_database_errors_total",
                        &[("activity", activity)],
                        0,
                    );
                }
            }
            for (activity, n) in errors {
                counter(
                    "fetchq_worker_database_errors_total",
                    &[("activity", activity)],
                    n,
                );
            }
            self.handle.run_upkeep();
            self.handle.render()
        }
    }

    /// Serves `GET /metrics` (anything else: 404) on `listener` until `stop`.
    pub(crate) async fn serve(
        listener: TcpListener,
        exporter: std::sync::Arc<Exporter>,
        stop: CancellationToken,
    ) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stop.cancelled() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let exporter = exporter.clone();
                    tokio::spawn(async move {
                        let answer = tokio::time::timeout(
                            Duration::from_secs(10),
                            answer(stream, &exporter),
                        );
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
}
