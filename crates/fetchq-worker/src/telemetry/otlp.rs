//! OpenTelemetry export (feature `otlp`): the same families as the
//! Prometheus endpoint, pushed over OTLP/HTTP (protobuf) to a collector by the
//! SDK's periodic reader, on its own thread. Counters and gauges are
//! observable instruments read from the runtime's atomics when the reader
//! collects; histograms are recorded as they happen. Temporality is
//! cumulative, as Prometheus expects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use super::{BUCKETS, FAMILIES, Kind, Sources};

/// The path of the metrics signal on an OTLP/HTTP collector.
const METRICS_PATH: &str = "/v1/metrics";

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

    /// How long one push may take before it is given up (at least 100 ms);
    /// it also bounds the last push at shutdown.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `service.name` resource attribute.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// A header sent with every push (an API key, a tenant).
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
        if let Some(url) = &self.endpoint {
            let ok = url.starts_with("http://") && url.len() > "http://".len();
            if !ok {
                return Err(format!(
                    "otlp endpoint {url:?}: expected an http:// URL (TLS is not built in)"
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
        let reader = PeriodicReader::builder(exporter)
            .with_interval(opts.interval)
            .build();
        let mut resource = Resource::builder();
        match &opts.service_name {
            Some(name) => resource = resource.with_service_name(name.clone()),
            None if std::env::var_os("OTEL_SERVICE_NAME").is_none() => {
                resource = resource.with_service_name("fetchq-worker");
            }
            None => {}
        }
        // Prometheus (through a collector) tells workers apart by instance
        resource = resource.with_attribute(KeyValue::new("service.instance.id", instance_id()));
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource.build())
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
    /// and a second (a collector that does not answer holds nobody up).
    pub(crate) async fn shutdown(&self) {
        let Some(provider) = self.take() else { return };
        let stop = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), stop).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::debug!(error = %e, "otlp: the last push failed"),
            Ok(Err(e)) => tracing::debug!(error = %e, "otlp: shutdown panicked"),
            Err(_) => tracing::warn!("otlp: the collector did not answer the last push in time"),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // a runtime that ended early: stop the reader off this thread (the
        // SDK's shutdown blocks until its last push ends)
        if let Some(provider) = self.take() {
            let _ = std::thread::Builder::new()
                .name("fetchq-otlp-shutdown".into())
                .spawn(move || provider.shutdown());
        }
    }
}

/// `host:pid`, this process's instance.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
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

    #[test]
    fn bad_options_are_refused() {
        let bad = [
            OtlpOptions::new().interval(Duration::ZERO),
            OtlpOptions::new().timeout(Duration::from_millis(1)),
            OtlpOptions::new().endpoint("https://c:4318"),
            OtlpOptions::new().endpoint("c:4318"),
            OtlpOptions::new().endpoint("http://"),
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
