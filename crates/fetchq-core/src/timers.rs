//! Timers (how long a piece of code takes: count, sum and a histogram, stored
//! as counters next to the core metrics, exact at read) and batched writes of
//! custom counters and timers (`fetchq.metric_time`, `fetchq.timer_list`).

use std::time::Duration;

use sqlx::Row;

use crate::error::{Error, Result};
use crate::lag::ExportedValue;
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// The upper bounds of the timer histogram buckets, in milliseconds, as
/// `fetchq.timer_buckets()` returns them; a last bucket, `+Inf`, takes the rest.
///
/// ```
/// assert_eq!(fetchq_core::TIMER_BUCKETS_MS.first(), Some(&1.0));
/// assert_eq!(fetchq_core::TIMER_BUCKETS_MS.last(), Some(&60_000.0));
/// ```
pub const TIMER_BUCKETS_MS: [f64; 15] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0,
];

/// The longest time a timer takes, in milliseconds (10^9 ms, about 11.6 days).
const MAX_TIME_MS: f64 = 1e9;

/// The prefix of the counters that store timers (reserved: user metrics cannot use it).
const TIMER_PREFIX: &str = "~t/";

/// Checks a timer name as the engine does: 1 to 64 characters of `A-Z`, `a-z`,
/// `0-9`, `_`, `.` and `-`, starting with a letter or `_`.
///
/// # Errors
///
/// [`Error::InvalidArgument`] saying why.
///
/// ```
/// use fetchq_core::validate_timer_name;
/// assert!(validate_timer_name("fetch_profile").is_ok());
/// assert!(validate_timer_name("http.get-ms").is_ok());
/// assert!(validate_timer_name("").is_err());
/// assert!(validate_timer_name("a/b").is_err());
/// assert!(validate_timer_name(&"x".repeat(65)).is_err());
/// ```
pub fn validate_timer_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            message: format!(
                "invalid timer name {:?}: 1 to 64 characters of A-Z, a-z, 0-9, _ . and -, starting with a letter or _",
                name.chars().take(80).collect::<String>()
            ),
        })
    }
}

/// Checks a custom counter name as the engine does: 1 to 100 characters, no
/// NUL, not starting with `~t/` (reserved for timers).
///
/// # Errors
///
/// [`Error::InvalidArgument`] saying why.
///
/// ```
/// use fetchq_core::validate_metric_name;
/// assert!(validate_metric_name("profiles_404").is_ok());
/// assert!(validate_metric_name("").is_err());
/// assert!(validate_metric_name("~t/x/us").is_err());
/// ```
pub fn validate_metric_name(name: &str) -> Result<()> {
    let len = name.chars().count();
    let reason = if !(1..=100).contains(&len) {
        Some("a metric name is 1 to 100 characters")
    } else if name.contains('\0') {
        Some("a metric name cannot contain NUL")
    } else if name.starts_with(TIMER_PREFIX) {
        Some("metric names starting with ~t/ are reserved for timers")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidArgument {
            message: reason.into(),
        }),
    }
}

/// A duration as the milliseconds the engine stores, checked.
fn millis(d: Duration) -> Result<f64> {
    let ms = d.as_secs_f64() * 1000.0;
    if ms <= MAX_TIME_MS {
        Ok(ms)
    } else {
        Err(Error::InvalidArgument {
            message: "a time is 0 to 10^9 milliseconds".into(),
        })
    }
}

/// A timer, exact at read: how many times were recorded, their sum, and the
/// histogram.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let t = client.timer_get("avengers", "fetch_profile").await?;
/// if t.count > 0 {
///     println!("mean {:.1} ms over {} calls", t.sum_ms / t.count as f64, t.count);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Timer {
    /// The queue.
    pub queue: String,
    /// The timer's name.
    pub name: String,
    /// How many times were recorded.
    pub count: u64,
    /// Their sum, in milliseconds (microsecond precision).
    pub sum_ms: f64,
    /// The histogram: (upper bound in ms, how many times were at most that);
    /// cumulative, the last bound is infinity and its count is `count`.
    pub buckets: Vec<(f64, u64)>,
}

impl Timer {
    fn empty(queue: &str, name: &str) -> Self {
        Timer {
            queue: queue.into(),
            name: name.into(),
            count: 0,
            sum_ms: 0.0,
            buckets: TIMER_BUCKETS_MS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .map(|le| (le, 0))
                .collect(),
        }
    }
}

/// The timers among a [`Client::metric_export`] read (the counters
/// `~t/<name>/us` and `~t/<name>/b<i>`), decoded, by queue and name. One read
/// gives a consistent view of counters and timers.
///
/// ```
/// use fetchq_core::{ExportedValue, timers_from_export};
/// let v = |m: &str, value: f64| ExportedValue { queue: "q".into(), metric: m.into(), value, counter: true };
/// let timers = timers_from_export(&[v("~t/get/us", 3500.0), v("~t/get/b2", 1.0), v("~t/get/b16", 1.0)]);
/// assert_eq!(timers.len(), 1);
/// assert_eq!(timers[0].count, 2);
/// assert_eq!(timers[0].sum_ms, 3.5);
/// assert_eq!(timers[0].buckets[0], (1.0, 0));
/// assert_eq!(timers[0].buckets[1], (2.5, 1));
/// assert_eq!(timers[0].buckets[15], (f64::INFINITY, 2));
/// ```
pub fn timers_from_export(values: &[ExportedValue]) -> Vec<Timer> {
    let mut out: std::collections::BTreeMap<(String, String), (Vec<u64>, f64)> =
        std::collections::BTreeMap::new();
    let n = TIMER_BUCKETS_MS.len() + 1;
    for v in values.iter().filter(|v| v.counter) {
        let Some(rest) = v.metric.strip_prefix(TIMER_PREFIX) else {
            continue;
        };
        let Some((name, part)) = rest.rsplit_once('/') else {
            continue;
        };
        if validate_timer_name(name).is_err() {
            continue;
        }
        let entry = out
            .entry((v.queue.clone(), name.to_string()))
            .or_insert_with(|| (vec![0; n], 0.0));
        if part == "us" {
            entry.1 = v.value / 1000.0;
        } else if let Some(i) = part.strip_prefix('b').and_then(|i| i.parse::<usize>().ok())
            && (1..=n).contains(&i)
        {
            // counters can be set below zero by hand: read those as none
            entry.0[i - 1] = if v.value > 0.0 { v.value as u64 } else { 0 };
        }
    }
    out.into_iter()
        .map(|((queue, name), (counts, sum_ms))| {
            let mut t = Timer::empty(&queue, &name);
            let mut running = 0u64;
            for (b, c) in t.buckets.iter_mut().zip(counts) {
                running = running.saturating_add(c);
                b.1 = running;
            }
            t.count = running;
            t.sum_ms = sum_ms;
            t
        })
        .collect()
}

/// Custom counter increments and timer readings to write in one round trip
/// ([`Client::metric_write_batch`]); every entry is checked when added.
///
/// ```
/// use std::time::Duration;
/// let mut batch = fetchq_core::MetricBatch::default();
/// batch.increment("avengers", "profiles_404", 1)?;
/// batch.time("avengers", "fetch_profile", Duration::from_millis(42))?;
/// assert!(batch.time("avengers", "bad name", Duration::ZERO).is_err());
/// assert_eq!(batch.len(), 2);
/// # Ok::<(), fetchq_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricBatch {
    counters: (Vec<String>, Vec<String>, Vec<i64>),
    timers: (Vec<String>, Vec<String>, Vec<f64>),
}

impl MetricBatch {
    /// Adds `increment` to the counter `metric` of `queue`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`], [`Error::InvalidArgument`] for a bad
    /// metric name (nothing is added).
    pub fn increment(&mut self, queue: &str, metric: &str, increment: i64) -> Result<()> {
        validate_queue_name(queue)?;
        validate_metric_name(metric)?;
        self.counters.0.push(queue.into());
        self.counters.1.push(metric.into());
        self.counters.2.push(increment);
        Ok(())
    }

    /// Records that the timer `name` of `queue` took `elapsed`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`], [`Error::InvalidArgument`] for a bad timer
    /// name or a time past 10^9 ms (nothing is added).
    pub fn time(&mut self, queue: &str, name: &str, elapsed: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        validate_timer_name(name)?;
        let ms = millis(elapsed)?;
        self.timers.0.push(queue.into());
        self.timers.1.push(name.into());
        self.timers.2.push(ms);
        Ok(())
    }

    /// Adds every entry of `other`.
    pub fn append(&mut self, other: MetricBatch) {
        let MetricBatch { counters, timers } = other;
        self.counters.0.extend(counters.0);
        self.counters.1.extend(counters.1);
        self.counters.2.extend(counters.2);
        self.timers.0.extend(timers.0);
        self.timers.1.extend(timers.1);
        self.timers.2.extend(timers.2);
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.counters.0.len() + self.timers.0.len()
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        *self = MetricBatch::default();
    }
}

impl Client {
    /// Records that the timer `name` of `queue` took `elapsed` (SQL
    /// `fetchq.metric_time`): one write to the counter log, no hot row, exact at
    /// the next read. Any valid queue name, existing or not.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`], [`Error::InvalidArgument`] for a bad timer
    /// name or a time past 10^9 ms, database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let started = std::time::Instant::now();
    /// // ... the work
    /// client.metric_time("avengers", "nightly_report", started.elapsed()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_time(&self, queue: &str, name: &str, elapsed: Duration) -> Result<()> {
        let mut batch = MetricBatch::default();
        batch.time(queue, name, elapsed)?;
        self.metric_write_batch(&batch).await.map(|_| ())
    }

    /// Writes a batch of counter increments and timer readings in one round
    /// trip; returns the number of rows written to the counter log (readings of
    /// the same timer and bucket are folded). An empty batch costs nothing.
    ///
    /// # Errors
    ///
    /// Database errors (the entries were checked when added).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let mut batch = fetchq_core::MetricBatch::default();
    /// batch.increment("avengers", "profiles_404", 3)?;
    /// batch.time("avengers", "fetch_profile", std::time::Duration::from_millis(120))?;
    /// client.metric_write_batch(&batch).await?;
    /// # Ok(()) }
    /// ```
    pub async fn metric_write_batch(&self, batch: &MetricBatch) -> Result<i32> {
        if batch.is_empty() {
            return Ok(0);
        }
        let row = sqlx::query(sql!("metric_write_batch"))
            .bind(&batch.counters.0)
            .bind(&batch.counters.1)
            .bind(&batch.counters.2)
            .bind(&batch.timers.0)
            .bind(&batch.timers.1)
            .bind(&batch.timers.2)
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get::<Option<i32>, _>(0)?.unwrap_or(0))
    }

    /// One timer of a queue, exact (count 0 when never written).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`], [`Error::InvalidArgument`] for a bad timer
    /// name, database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let t = client.timer_get("avengers", "fetch_profile").await?;
    /// println!("{} calls, {} ms in all", t.count, t.sum_ms);
    /// # Ok(()) }
    /// ```
    pub async fn timer_get(&self, queue: &str, name: &str) -> Result<Timer> {
        validate_queue_name(queue)?;
        validate_timer_name(name)?;
        let mut list = self.timer_query(Some(queue), Some(name)).await?;
        Ok(list.pop().unwrap_or_else(|| Timer::empty(queue, name)))
    }

    /// Every timer of `queue` (of every queue when `None`), exact, by queue
    /// and name. O(counters), never O(documents).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// for t in client.timer_list(Some("avengers")).await? {
    ///     println!("{}: {} calls", t.name, t.count);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn timer_list(&self, queue: Option<&str>) -> Result<Vec<Timer>> {
        if let Some(q) = queue {
            validate_queue_name(q)?;
        }
        self.timer_query(queue, None).await
    }

    async fn timer_query(&self, queue: Option<&str>, name: Option<&str>) -> Result<Vec<Timer>> {
        let rows = sqlx::query(sql!("timer_list"))
            .bind(queue)
            .bind(name)
            .fetch_all(self.exec())
            .await?;
        rows.iter()
            .map(|row| {
                let le: Vec<f64> = row.try_get(4)?;
                let cum: Vec<i64> = row.try_get(5)?;
                let count: i64 = row.try_get(2)?;
                Ok(Timer {
                    queue: row.try_get(0)?,
                    name: row.try_get(1)?,
                    count: u64::try_from(count).unwrap_or(0),
                    sum_ms: row.try_get(3)?,
                    buckets: le
                        .into_iter()
                        .zip(cum)
                        .map(|(l, c)| (l, u64::try_from(c).unwrap_or(0)))
                        .collect(),
                })
            })
            .collect()
    }
}
