//! OpenTelemetry export (feature `otlp`): the same families as the
//! Prometheus endpoint, pushed over OTLP/HTTP (protobuf) to a collector by the
//! SDK's periodic reader, on its own thread. Counters and gauges are
//! observable instruments read from the runtime's atomics when the reader
//! collects; histograms are recorded as they happen. Temporality is
//! cumulative, as Prometheus expects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};

use super::{BUCKETS, FAMILIES, Kind, Sources};

/// The path of the metrics signal on an OTLP/HTTP collector.
const METRICS_PATH: &str = "/v1/metrics";

/// The longest the SDK waits for the last push at shutdown, whatever the
/// push timeout (its periodic reader's own limit).
const SDK_SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Runtimes started with OTLP in this process (instance ids stay distinct).
static STARTED: AtomicU64 = AtomicU64::new(0);

/// Where and how often the runtime pushes its metrics over OTLP/HTTP
/// (protobuf), for [`Runtime::otlp`](crate::Runtime::otlp).
///
/// With no [`endpoint`](Self::endpoint), the standard variables apply:
/// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (the full URL), then
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/metrics` added), then
/// `http://localhost:4318/v1/metrics`; `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` are read too. The metric names are the
/// Prometheus endpoint's without their `_total` and `_seconds` suffixes
/// (seconds become the unit `s`), so a collector that writes to Prometheus
/// produces the same series and the bundled Grafana board works unchanged.
///
/// ```no_run
/// use std::time::Duration;
/// use fetchq_worker::{OtlpOptions, Runtime};
///
/// # async fn run() -> Result<(), fetchq_worker::WorkerError> {
/// Runtime::new("postgres://localhost/app")
///     .otlp(
///         OtlpOptions::new()
///             .endpoint("http://otel-collector:4318")
///             .interval(Duration::from_secs(15))
///             .service_name("crawler"),
///     )
///     // .register(...)
///     .run()
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    endpoint: Option<String>,
    interval: Duration,
    timeout: Duration,
    service_name: Option<String>,
    instance_id: Option<String>,
    headers: HashMap<String, String>,
}

impl Default for OtlpOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OtlpOptions {
    /// The defaults: the endpoint from the environment, an export every
    /// 10 s, a 5 s timeout per export, the service name from
    /// `OTEL_SERVICE_NAME` or else `fetchq-worker`.
    pub fn new() -> Self {
        Self {
            endpoint: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            service_name: None,
            instance_id: None,
            headers: HashMap::new(),
        }
    }

    /// The collector: its base URL (`http://collector:4318`, to which
    /// `/v1/metrics` is added) or the full URL of its metrics path. Plain
    /// HTTP only (no TLS in this build): point it at a collector or agent
    /// next to the worker.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// How often metrics are pushed (at least 100 ms).
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every;
        self
    }

    /// How long one push may take before it is given up (at least 100 ms).
    /// The last push at shutdown waits at most this or 5 s (the SDK's own
    /// limit), whichever is shorter, and is skipped on a forced shutdown.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `service.name` resource attribute (over `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The `service.instance.id` resource attribute (over
    /// `OTEL_RESOURCE_ATTRIBUTES`). Default: `host:pid`, and `host:pid:N`
    /// for the N-th runtime of the process to start OTLP, so two runtimes
    /// never push the same series.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// A header sent with every push (an API key, a tenant); a name or value
    /// HTTP cannot carry fails [`run`](crate::Runtime::run).
    /// `OTEL_EXPORTER_OTLP_HEADERS` entries take precedence (the SDK's rule).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Checks the options; the message says what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let least = Duration::from_millis(100);
        if self.interval < least {
            return Err(format!("otlp interval {:?} is under 100ms", self.interval));
        }
        if self.timeout < least {
            return Err(format!("otlp timeout {:?} is under 100ms", self.timeout));
        }
        let from_env = || {
            [
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
            .into_iter()
            .find_map(|var| {
                let v = std::env::var(var).ok()?;
                (!v.trim().is_empty()).then_some((var, v))
            })
        };
        let endpoint = match &self.endpoint {
            Some(url) => Some(("endpoint", url.clone())),
            None => from_env(),
        };
        if let Some((from, url)) = endpoint {
            let ok = url.starts_with("http://") && url.len() > "http://".len();
            if !ok {
                return Err(format!(
                    "otlp {from} {url:?}: expected an http:// URL (TLS is not built in)"
                ));
            }
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!(
                    "otlp header name {name:?} is not a valid HTTP header name"
                ));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return Err(format!(
                    "otlp header {name:?}: its value is not a valid HTTP header value"
                ));
            }
        }
        Ok(())
    }

    /// The full metrics URL, when set here.
    fn metrics_url(&self) -> Option<String> {
        self.endpoint.as_ref().map(|url| {
            let url = url.trim_end_matches('/');
            if url.ends_with(METRICS_PATH) {
                url.to_owned()
            } else {
                format!("{url}{METRICS_PATH}")
            }
        })
    }
}

/// The OTLP name of a Prometheus family name.
fn otel_name(name: &'static str) -> &'static str {
    name.strip_suffix("_total")
        .or_else(|| name.strip_suffix("_seconds"))
        .unwrap_or(name)
}

fn attributes(labels: &[(&'static str, &str)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.to_string()))
        .collect()
}

/// One histogram series: the instrument and its attributes.
#[derive(Debug)]
pub(crate) struct Series {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl Series {
    pub(crate) fn record(&self, seconds: f64) {
        self.histogram.record(seconds, &self.attributes);
    }
}

/// The running OTLP export.
#[derive(Debug)]
pub(crate) struct Exporter {
    /// Taken by [`shutdown`](Self::shutdown) (or by drop).
    provider: Mutex<Option<SdkMeterProvider>>,
    histograms: HashMap<&'static str, opentelemetry::metrics::Histogram<f64>>,
    timeout: Duration,
}

impl Exporter {
    /// Starts pushing: builds the exporter, the reader (its thread) and the
    /// instruments.
    pub(crate) fn start(opts: &OtlpOptions, sources: Sources) -> Result<Self, String> {
        opts.validate()?;
        let mut builder = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_timeout(opts.timeout);
        if let Some(url) = opts.metrics_url() {
            builder = builder.with_endpoint(url);
        }
        if !opts.headers.is_empty() {
            builder = builder.with_headers(opts.headers.clone());
        }
        let exporter = builder.build().map_err(|e| format!("otlp exporter: {e}"))?;
        let started = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        let exporter = Logged {
            inner: exporter,
            failing: AtomicBool::new(false),
            endpoint: opts
                .metrics_url()
                .unwrap_or_else(|| "the OTEL_EXPORTER_OTLP_* endpoint".into()),
        };
        let reader = PeriodicReader::builder(exporter)
            .with_interval(opts.interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource(opts, started))
            .build();
        let meter = provider.meter("fetchq_worker");
        let histograms = instruments(&meter, &Arc::new(sources));
        Ok(Exporter {
            provider: Mutex::new(Some(provider)),
            histograms,
            timeout: opts.timeout,
        })
    }

    /// The histogram `name{labels}` (none for a name not in [`FAMILIES`]).
    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Option<Series> {
        self.histograms.get(name).map(|h| Series {
            histogram: h.clone(),
            attributes: attributes(labels),
        })
    }

    fn take(&self) -> Option<SdkMeterProvider> {
        self.provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Pushes the last values and stops, waiting at most the push timeout
    /// (or the SDK's 5 s) and a second: a collector that does not answer
    /// holds nobody up.
    pub(crate) async fn shutdown(&self) {
        let Some(provider) = self.take() else { return };
        let stop = tokio::task::spawn_blocking(move || provider.shutdown());
        let limit = self.timeout.min(SDK_SHUTDOWN_LIMIT) + Duration::from_secs(1);
        match tokio::time::timeout(limit, stop).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::debug!(error = %e, "otlp: the last push failed"),
            Ok(Err(e)) => tracing::debug!(error = %e, "otlp: shutdown panicked"),
            Err(_) => tracing::warn!("otlp: the collector did not answer the last push in time"),
        }
    }
}

impl Exporter {
    /// Stops without waiting for anyone (a forced shutdown): the reader's
    /// last push, if any, happens on a thread of its own.
    pub(crate) fn abandon(&self) {
        if let Some(provider) = self.take() {
            let _ = std::thread::Builder::new()
                .name("fetchq-otlp-shutdown".into())
                .spawn(move || provider.shutdown());
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // a runtime that ended early: stop the reader off this thread (the
        // SDK's shutdown blocks until its last push ends)
        self.abandon();
    }
}

/// The resource: our defaults, then `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_SERVICE_NAME` over them, then what the options say over those.
fn resource(opts: &OtlpOptions, started: u64) -> Resource {
    let instance = match started {
        1 => instance_id(),
        n => format!("{}:{n}", instance_id()),
    };
    let mut resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "fetchq-worker"),
            KeyValue::new("service.instance.id", instance),
        ])
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_detector(Box::new(EnvResourceDetector::new()));
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME")
        && !name.trim().is_empty()
    {
        resource = resource.with_service_name(name);
    }
    if let Some(name) = &opts.service_name {
        resource = resource.with_service_name(name.clone());
    }
    if let Some(id) = &opts.instance_id {
        resource = resource.with_attribute(KeyValue::new("service.instance.id", id.clone()));
    }
    resource.build()
}

/// The OTLP exporter, saying when pushes start failing (once, at warn) and
/// when they succeed again (the SDK itself logs nothing in this build).
#[derive(Debug)]
struct Logged {
    inner: opentelemetry_otlp::MetricExporter,
    failing: AtomicBool,
    endpoint: String,
}

impl PushMetricExporter for Logged {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e,
                    "otlp: pushing metrics failed; retried every interval, said again once it works");
            }
            Err(e) => tracing::debug!(error = %e, "otlp: pushing metrics failed again"),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.endpoint, "otlp: pushing metrics works again");
            }
            Ok(()) => {}
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// `host:pid`, this process's instance.
fn instance_id() -> String {
    format!(
        "{}:{}",
        crate::registration::host_name(),
        std::process::id()
    )
}

/// Every family's instrument: histograms returned by name, counters and
/// gauges registered with callbacks reading `sources`.
fn instruments(
    meter: &Meter,
    sources: &Arc<Sources>,
) -> HashMap<&'static str, opentelemetry::metrics::Histogram<f64>> {
    let mut histograms = HashMap::new();
    for &(name, kind, help) in FAMILIES {
        let otel = otel_name(name);
        let sources = sources.clone();
        // the callback keeps only its own family's samples
        let observe = move |obs: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
            sources.each(&mut |n, labels, v| {
                if n == name {
                    obs.observe(v, &attributes(labels));
                }
            });
        };
        match kind {
            Kind::Histogram => {
                let h = meter
                    .f64_histogram(otel)
                    .with_unit("s")
                    .with_description(help)
                    .with_boundaries(BUCKETS.to_vec())
                    .build();
                histograms.insert(name, h);
            }
            Kind::Gauge => {
                meter
                    .u64_observable_gauge(otel)
                    .with_description(help)
                    .with_callback(observe)
                    .build();
            }
            Kind::Counter => {
                meter
                    .u64_observable_counter(otel)
                    .with_description(help)
                    .with_callback(observe)
                    .build();
            }
        }
    }
    histograms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_their_prometheus_suffixes() {
        assert_eq!(
            otel_name("fetchq_handler_duration_seconds"),
            "fetchq_handler_duration"
        );
        assert_eq!(
            otel_name("fetchq_worker_picks_total"),
            "fetchq_worker_picks"
        );
        assert_eq!(
            otel_name("fetchq_worker_documents_in_flight"),
            "fetchq_worker_documents_in_flight"
        );
    }

    #[test]
    fn endpoints_get_the_metrics_path_once() {
        let url = |u: &str| OtlpOptions::new().endpoint(u).metrics_url();
        assert_eq!(
            url("http://c:4318").as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(
            url("http://c:4318/").as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(
            url("http://c:4318/v1/metrics").as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(OtlpOptions::new().metrics_url(), None);
    }

    fn attribute(r: &Resource, key: &'static str) -> Option<String> {
        r.get(&opentelemetry::Key::from_static_str(key))
            .map(|v| v.to_string())
    }

    #[test]
    fn each_runtime_has_its_own_instance_and_options_win() {
        let first = resource(&OtlpOptions::new(), 1);
        let second = resource(&OtlpOptions::new(), 2);
        let (a, b) = (
            attribute(&first, "service.instance.id").unwrap(),
            attribute(&second, "service.instance.id").unwrap(),
        );
        assert!(a.ends_with(&format!(":{}", std::process::id())), "{a}");
        assert_eq!(b, format!("{a}:2"));
        if std::env::var_os("OTEL_SERVICE_NAME").is_none()
            && std::env::var_os("OTEL_RESOURCE_ATTRIBUTES").is_none()
        {
            assert_eq!(
                attribute(&first, "service.name").as_deref(),
                Some("fetchq-worker")
            );
        }
        let named = resource(
            &OtlpOptions::new()
                .service_name("crawler")
                .instance_id("pod-7"),
            3,
        );
        assert_eq!(
            attribute(&named, "service.name").as_deref(),
            Some("crawler")
        );
        assert_eq!(
            attribute(&named, "service.instance.id").as_deref(),
            Some("pod-7")
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = [
            OtlpOptions::new().interval(Duration::ZERO),
            OtlpOptions::new().timeout(Duration::from_millis(1)),
            OtlpOptions::new().endpoint("https://c:4318"),
            OtlpOptions::new().endpoint("c:4318"),
            OtlpOptions::new().endpoint("http://"),
            OtlpOptions::new().header("x api key", "k"),
            OtlpOptions::new().header("x-tenant", "a\nb"),
        ];
        for o in bad {
            assert!(o.validate().is_err(), "{o:?}");
        }
        assert!(
            OtlpOptions::new()
                .endpoint("http://127.0.0.1:4318")
                .validate()
                .is_ok()
        );
    }
}
