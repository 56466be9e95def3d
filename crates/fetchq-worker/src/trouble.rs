//! Database trouble: back off, never crash and never spin, and log ONE line per
//! incident for the whole runtime (not one per activity and failure).
//!
//! Every activity (picking, heartbeats, writing outcomes, maintenance, the
//! notification listener) keeps its own [`Trouble`] for its backoff, and they
//! all report to one shared [`Incidents`]: the first failure while no incident
//! is open is a warning; later failures, from any activity, are debug lines;
//! once no activity has failed for [`QUIET`] (and every activity that failed
//! has succeeded since, or has been silent for [`STALE`]), one info line says
//! the incident is over, with its counts.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long every activity must stay healthy before an incident is over.
pub(crate) const QUIET: Duration = Duration::from_secs(2);

/// An activity that failed and has not run since counts as healthy after this.
pub(crate) const STALE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Open {
    since: Instant,
    last_failure: Instant,
    failures: u64,
    activities: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct State {
    open: Option<Open>,
    /// Activities whose last call failed, with the time of that failure.
    failing: HashMap<String, Instant>,
    /// Incidents opened so far (for tests and logs).
    incidents: u64,
    /// Failures so far, by activity kind (for the metrics).
    errors: std::collections::BTreeMap<&'static str, u64>,
}

/// The activity kinds of the database error metrics.
#[cfg_attr(not(any(feature = "metrics", feature = "otlp")), allow(dead_code))]
pub(crate) const ACTIVITIES: [&str; 7] = [
    "pick",
    "heartbeat",
    "outcomes",
    "maintenance",
    "notifications",
    "startup",
    "other",
];

/// The bounded label of an activity (a pool's names its handler).
fn activity_kind(activity: &str) -> &'static str {
    match activity {
        a if a.starts_with("picking") => "pick",
        "heartbeat" => "heartbeat",
        "writing outcomes" => "outcomes",
        "maintenance" => "maintenance",
        "listening for notifications" => "notifications",
        "starting up" => "startup",
        _ => "other",
    }
}

/// The runtime's database incidents, shared by every activity.
#[derive(Debug, Clone, Default)]
pub(crate) struct Incidents {
    inner: Arc<Mutex<State>>,
}

impl Incidents {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failure(&self, activity: &str, err: &dyn std::fmt::Display, streak: u32, now: Instant) {
        let mut state = self.lock();
        *state.errors.entry(activity_kind(activity)).or_default() += 1;
        state.failing.insert(activity.to_owned(), now);
        match &mut state.open {
            Some(open) => {
                open.failures += 1;
                open.last_failure = now;
                open.activities.insert(activity.to_owned());
                tracing::debug!(activity, error = %err, failures = streak, "database trouble continues");
            }
            None => {
                state.open = Some(Open {
                    since: now,
                    last_failure: now,
                    failures: 1,
                    activities: BTreeSet::from([activity.to_owned()]),
                });
                state.incidents += 1;
                tracing::warn!(activity, error = %err,
                    "database trouble: retrying with backoff (further failures are logged at debug level until it is over)");
            }
        }
    }

    fn success(&self, activity: &str, now: Instant) {
        let mut state = self.lock();
        state.failing.remove(activity);
        let Some(open) = &state.open else { return };
        let quiet = now.saturating_duration_since(open.last_failure) >= QUIET;
        let healthy = state
            .failing
            .values()
            .all(|at| now.saturating_duration_since(*at) >= STALE);
        if quiet && healthy {
            if let Some(open) = state.open.take() {
                let activities: Vec<&str> = open.activities.iter().map(String::as_str).collect();
                tracing::info!(
                    failures = open.failures,
                    lasted = ?open.last_failure.saturating_duration_since(open.since),
                    ?activities,
                    "database trouble over"
                );
            }
            state.failing.clear();
        }
    }

    /// Database failures so far, by activity kind.
    #[cfg_attr(not(any(feature = "metrics", feature = "otlp")), allow(dead_code))]
    pub(crate) fn errors_by_activity(&self) -> Vec<(&'static str, u64)> {
        self.lock().errors.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// How many incidents were opened so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.lock().incidents
    }

    /// Whether an incident is open.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.lock().open.is_some()
    }
}

/// Tracks consecutive failures of one activity (picking, heartbeats...).
#[derive(Debug)]
pub(crate) struct Trouble {
    what: String,
    failures: u32,
    incidents: Incidents,
}

impl Trouble {
    pub(crate) fn new(what: impl Into<String>, incidents: &Incidents) -> Self {
        Self {
            what: what.into(),
            failures: 0,
            incidents: incidents.clone(),
        }
    }

    /// Records a failure; returns how long to wait before trying again
    /// (100 ms doubling up to 5 s). Logged through the shared incident.
    pub(crate) fn failed(&mut self, err: &dyn std::fmt::Display) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.incidents
            .failure(&self.what, err, self.failures, Instant::now());
        let exp = self.failures.saturating_sub(1).min(6);
        Duration::from_millis(100 * (1 << exp)).min(Duration::from_secs(5))
    }

    /// Records a success (which may end the incident).
    pub(crate) fn ok(&mut self) {
        self.failures = 0;
        self.incidents.success(&self.what, Instant::now());
    }
}

/// A function or table of a later schema does not exist (42883 undefined
/// function, 42P01 undefined table): the database runs an older fetchq
/// schema (below 18 for schedules, 21 for worker registrations), which is
/// not database trouble.
pub(crate) fn is_older_schema(e: &fetchq_core::Error) -> bool {
    match e {
        fetchq_core::Error::Database(db) => db
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| matches!(c.as_ref(), "42883" | "42P01")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_and_resets() {
        let incidents = Incidents::default();
        let mut t = Trouble::new("pick", &incidents);
        let waits: Vec<u128> = (0..9).map(|_| t.failed(&"down").as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        t.ok();
        assert_eq!(t.failed(&"down again").as_millis(), 100);
    }

    #[test]
    fn one_incident_for_many_activities_until_all_are_quiet() {
        let incidents = Incidents::default();
        let mut now = Instant::now();
        for _ in 0..5 {
            incidents.failure("pick", &"killed", 1, now);
            incidents.success("pick", now);
            incidents.failure("heartbeat", &"killed", 1, now);
            incidents.success("heartbeat", now);
            now += Duration::from_millis(500);
        }
        assert_eq!(incidents.count(), 1, "one incident, not one per failure");
        assert!(incidents.is_open(), "a failure 500 ms ago keeps it open");
        now += QUIET;
        incidents.success("pick", now);
        assert!(!incidents.is_open(), "quiet for long enough: over");
        incidents.failure("heartbeat", &"down", 1, now);
        assert_eq!(incidents.count(), 2, "a later failure is a new incident");
        now += QUIET;
        incidents.success("pick", now);
        assert!(incidents.is_open(), "the heartbeat has not succeeded since");
        now += STALE;
        incidents.success("pick", now);
        assert!(
            !incidents.is_open(),
            "a silent activity counts as healthy after a while"
        );
    }
}
