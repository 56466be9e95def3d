//! The workloads, each next to its plain-SQL baseline.

pub(crate) mod drain;
pub(crate) mod footprint;
pub(crate) mod latency;
pub(crate) mod push;
pub(crate) mod reschedule;
pub(crate) mod scale;

pub(crate) type BoxError = Box<dyn std::error::Error>;

/// The `p` quantile (0..=1) of sorted samples.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Documents `prefix-<i>` for i in `range`, with a small payload.
pub(crate) fn docs(prefix: &str, range: std::ops::Range<usize>) -> Vec<fetchq_core::NewDoc> {
    range
        .map(|i| {
            fetchq_core::NewDoc::new(format!("{prefix}-{i:09}"))
                .payload(serde_json::json!({"i": i}))
        })
        .collect()
}
