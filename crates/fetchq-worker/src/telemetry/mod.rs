//! The runtime's process metrics. Counters are plain atomics, always kept
//! (the handlers' [`Counters`], the runtime's [`RuntimeCounters`], the
//! database errors of [`Incidents`]) and read by an exporter when it
//! collects, so they cost nothing more when metrics are on; histograms
//! (handler duration, pick and outcome-batch latency) are recorded only when
//! an exporter is on: the Prometheus endpoint (feature `metrics`,
//! [`Runtime::metrics_addr`](crate::Runtime)) and OTLP push (feature `otlp`,
//! [`Runtime::otlp`](crate::Runtime)). Both export the same families under
//! the same names (see [`FAMILIES`]).

// without an exporter the families and their sources are never read
#![cfg_attr(not(any(feature = "metrics", feature = "otlp")), allow(dead_code))]

#[cfg(feature = "otlp")]
pub(crate) mod otlp;
#[cfg(feature = "metrics")]
pub(crate) mod prom;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::stats::{Counters, Stats, bump};
use crate::trouble::Incidents;

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

/// Histogram buckets, in seconds: 1 ms to 60 s.
pub(crate) const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The outcome labels of `fetchq_handler_duration_seconds`, as [`crate::Outcome::kind`] names them.
pub(crate) const OUTCOMES: [&str; 6] = [
    "complete",
    "reschedule",
    "reject",
    "kill",
    "drop",
    "migrate",
];

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Seconds, recorded as they happen.
    Histogram,
    /// A value read when collected.
    Gauge,
    /// A monotonic count read when collected.
    Counter,
}

/// Every family: (Prometheus name, kind, help). OTLP names drop the
/// `_total` and `_seconds` suffixes (seconds become the unit `s`), so a
/// collector that translates OTLP into Prometheus gives these same names.
pub(crate) const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "fetchq_handler_duration_seconds",
        Kind::Histogram,
        "How long handlers ran, by queue, handler and outcome.",
    ),
    (
        "fetchq_worker_pick_duration_seconds",
        Kind::Histogram,
        "How long a pick round trip took.",
    ),
    (
        "fetchq_worker_outcome_batch_duration_seconds",
        Kind::Histogram,
        "How long writing one batch of outcomes took.",
    ),
    (
        "fetchq_worker_documents_in_flight",
        Kind::Gauge,
        "Documents picked and not yet handed over for writing.",
    ),
    (
        "fetchq_worker_picks_total",
        Kind::Counter,
        "Pick round trips (empty ones included).",
    ),
    (
        "fetchq_worker_picked_documents_total",
        Kind::Counter,
        "Documents picked.",
    ),
    (
        "fetchq_worker_outcomes_total",
        Kind::Counter,
        "Outcomes written, by outcome.",
    ),
    (
        "fetchq_worker_handler_failures_total",
        Kind::Counter,
        "Handler errors, panics (reason=error) and max-runtime cancellations (reason=timeout).",
    ),
    (
        "fetchq_worker_lease_losses_total",
        Kind::Counter,
        "Documents whose lease was lost: their results were discarded.",
    ),
    (
        "fetchq_worker_released_total",
        Kind::Counter,
        "Documents given back at shutdown.",
    ),
    (
        "fetchq_worker_refused_outcomes_total",
        Kind::Counter,
        "Outcomes the database refused for good.",
    ),
    (
        "fetchq_worker_heartbeats_total",
        Kind::Counter,
        "Lease extension round trips.",
    ),
    (
        "fetchq_worker_heartbeat_leases_total",
        Kind::Counter,
        "Leases extended by heartbeats.",
    ),
    (
        "fetchq_worker_outcome_batches_total",
        Kind::Counter,
        "Outcome write batches.",
    ),
    (
        "fetchq_worker_database_errors_total",
        Kind::Counter,
        "Database errors met, by activity (retried with backoff).",
    ),
];

/// The kind of the family `name`.
#[cfg(feature = "metrics")]
pub(crate) fn kind_of(name: &str) -> Kind {
    FAMILIES
        .iter()
        .find(|f| f.0 == name)
        .map_or(Kind::Counter, |f| f.1)
}

/// What [`Sources::each`] calls: `(family name, labels, value)`.
pub(crate) type Visit<'a> = dyn FnMut(&'static str, &[(&'static str, &str)], u64) + 'a;

/// Where the counters and gauges are read from, when an exporter collects.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) stats: Stats,
    pub(crate) incidents: Incidents,
    pub(crate) runtime: Arc<RuntimeCounters>,
}

impl Sources {
    /// Calls `f(name, labels, value)` for every counter and gauge sample now.
    pub(crate) fn each(&self, f: &mut Visit<'_>) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (handler, c) in self.stats.handlers() {
            let Some(queue) = c.queue.get() else { continue };
            let l = [("queue", queue.as_str()), ("handler", handler.as_str())];
            f("fetchq_worker_documents_in_flight", &l, get(&c.in_flight));
            f("fetchq_worker_picks_total", &l, get(&c.picks));
            f("fetchq_worker_picked_documents_total", &l, get(&c.picked));
            f("fetchq_worker_lease_losses_total", &l, get(&c.lease_lost));
            f("fetchq_worker_released_total", &l, get(&c.released));
            f("fetchq_worker_refused_outcomes_total", &l, get(&c.refused));
            for (reason, v) in [("error", &c.failed), ("timeout", &c.timed_out)] {
                let l = [l[0], l[1], ("reason", reason)];
                f("fetchq_worker_handler_failures_total", &l, get(v));
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
                f("fetchq_worker_outcomes_total", &l, get(v));
            }
        }
        let r = &self.runtime;
        f("fetchq_worker_heartbeats_total", &[], get(&r.heartbeats));
        f(
            "fetchq_worker_heartbeat_leases_total",
            &[],
            get(&r.heartbeat_leases),
        );
        f(
            "fetchq_worker_outcome_batches_total",
            &[],
            get(&r.outcome_batches),
        );
        // every activity, 0 until it fails: a board's query finds the series
        let errors = self.incidents.errors_by_activity();
        for activity in crate::trouble::ACTIVITIES {
            let n = errors
                .iter()
                .find(|(a, _)| *a == activity)
                .map_or(0, |(_, n)| *n);
            f(
                "fetchq_worker_database_errors_total",
                &[("activity", activity)],
                n,
            );
        }
    }
}

/// One histogram series, in every exporter that is on.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    #[cfg(feature = "metrics")]
    prom: Option<metrics::Histogram>,
    #[cfg(feature = "otlp")]
    otlp: Option<otlp::Series>,
}

impl Histogram {
    /// Records `seconds` (a no-op with no exporter).
    pub(crate) fn record(&self, seconds: f64) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.prom {
            h.record(seconds);
        }
        #[cfg(feature = "otlp")]
        if let Some(h) = &self.otlp {
            h.record(seconds);
        }
        #[cfg(not(any(feature = "metrics", feature = "otlp")))]
        let _ = seconds;
    }
}

/// One handler's histograms, made once when its pool starts.
#[derive(Debug)]
pub(crate) struct HandlerHistograms {
    durations: [Histogram; 6],
    pick: Histogram,
}

impl HandlerHistograms {
    fn duration(&self, outcome: &str) -> &Histogram {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(2);
        &self.durations[i]
    }
}

/// The exporters that are on.
#[derive(Debug, Default)]
pub(crate) struct Exporters {
    #[cfg(feature = "metrics")]
    pub(crate) prom: Option<Arc<prom::Exporter>>,
    #[cfg(feature = "otlp")]
    pub(crate) otlp: Option<otlp::Exporter>,
}

impl Exporters {
    fn any(&self) -> bool {
        #[allow(unused_mut)]
        let mut on = false;
        #[cfg(feature = "metrics")]
        {
            on |= self.prom.is_some();
        }
        #[cfg(feature = "otlp")]
        {
            on |= self.otlp.is_some();
        }
        on
    }

    fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        #[cfg(not(any(feature = "metrics", feature = "otlp")))]
        let _ = (name, labels);
        Histogram {
            #[cfg(feature = "metrics")]
            prom: self.prom.as_ref().map(|e| e.histogram(name, labels)),
            #[cfg(feature = "otlp")]
            otlp: self.otlp.as_ref().and_then(|e| e.histogram(name, labels)),
        }
    }
}

/// What the runtime's activities report to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Telemetry {
    pub(crate) counters: Arc<RuntimeCounters>,
    exporters: Arc<Exporters>,
    outcome_batch: Arc<Histogram>,
}

impl Telemetry {
    /// Telemetry reporting to `exporters`, which read `counters`.
    pub(crate) fn new(counters: Arc<RuntimeCounters>, exporters: Exporters) -> Self {
        let outcome_batch =
            exporters.histogram("fetchq_worker_outcome_batch_duration_seconds", &[]);
        Telemetry {
            counters,
            exporters: Arc::new(exporters),
            outcome_batch: Arc::new(outcome_batch),
        }
    }

    /// The exporters, for the runtime to serve and stop them.
    pub(crate) fn exporters(&self) -> &Exporters {
        &self.exporters
    }

    /// Gets a handler's histograms ready (when exporting).
    pub(crate) fn attach(&self, counters: &Counters, queue: &str, handler: &str) {
        let _ = counters.queue.set(queue.to_owned());
        if !self.exporters.any() {
            return;
        }
        let e = &self.exporters;
        let labels = [("queue", queue), ("handler", handler)];
        let _ = counters.histograms.set(HandlerHistograms {
            durations: OUTCOMES.map(|o| {
                let l = [labels[0], labels[1], ("outcome", o)];
                e.histogram("fetchq_handler_duration_seconds", &l)
            }),
            pick: e.histogram("fetchq_worker_pick_duration_seconds", &labels),
        });
    }

    /// A pick round trip took `elapsed`.
    pub(crate) fn picked(&self, counters: &Counters, elapsed: Duration) {
        bump(&counters.picks, 1);
        if let Some(h) = counters.histograms.get() {
            h.pick.record(elapsed.as_secs_f64());
        }
    }

    /// A handler returned `outcome` after `elapsed`.
    pub(crate) fn handled(&self, counters: &Counters, outcome: &'static str, elapsed: Duration) {
        if let Some(h) = counters.histograms.get() {
            h.duration(outcome).record(elapsed.as_secs_f64());
        }
    }

    /// A heartbeat round trip for `leases` leases.
    pub(crate) fn heartbeat(&self, leases: usize) {
        bump(&self.counters.heartbeats, 1);
        bump(&self.counters.heartbeat_leases, leases as u64);
    }

    /// An outcome batch was written in `elapsed`.
    pub(crate) fn outcome_batch(&self, elapsed: Duration) {
        bump(&self.counters.outcome_batches, 1);
        self.outcome_batch.record(elapsed.as_secs_f64());
    }
}
