//! Database trouble: back off and log once, never crash and never spin.

use std::time::Duration;

/// Tracks consecutive failures of one activity (picking, heartbeats...).
#[derive(Debug)]
pub(crate) struct Trouble {
    what: String,
    failures: u32,
}

impl Trouble {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before trying again
    /// (100 ms doubling up to 5 s). Only the first failure of a streak is a warning.
    pub(crate) fn failed(&mut self, err: &dyn std::fmt::Display) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!(activity = %self.what, error = %err, "database trouble, retrying with backoff");
        } else {
            tracing::debug!(activity = %self.what, error = %err, failures = self.failures, "still failing");
        }
        let exp = self.failures.saturating_sub(1).min(6);
        Duration::from_millis(100 * (1 << exp)).min(Duration::from_secs(5))
    }

    /// Records a success, logging the recovery after a streak of failures.
    pub(crate) fn ok(&mut self) {
        if self.failures > 0 {
            tracing::info!(activity = %self.what, failures = self.failures, "database reachable again");
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_and_resets() {
        let mut t = Trouble::new("pick");
        let waits: Vec<u128> = (0..9).map(|_| t.failed(&"down").as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        t.ok();
        assert_eq!(t.failed(&"down again").as_millis(), 100);
    }
}
