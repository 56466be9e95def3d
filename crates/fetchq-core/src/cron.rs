//! Schedules (cron): a document pushed, or made due again, on a calendar
//! (`fetchq.schedule_set`, `schedule_drop`, `schedule_list`, and the
//! maintenance leader's [`Client::schedule_tick`]).
//!
//! The expression is parsed with [croner](https://docs.rs/croner) (5 fields,
//! or 6 with seconds first, or `@daily`-style nicknames; day-of-month and
//! day-of-week are OR-ed as in Vixie cron) and read in an IANA time zone with
//! [chrono-tz](https://docs.rs/chrono-tz). The engine cannot parse cron in
//! SQL, so [`Client::schedule_set`] checks the expression here first and
//! returns [`Error::InvalidCron`] / [`Error::UnknownTimeZone`]; the SQL
//! function checks the shape and the time zone again for callers from `psql`.
//!
//! # Daylight-saving time
//!
//! Ticks are computed in the schedule's time zone, as croner defines it
//! (the Open Cron Pattern Specification, like Vixie cron):
//!
//! * **spring forward** (Europe/Stockholm 2026-03-29: 02:00 to 02:59 do not
//!   exist): a fixed-time schedule (`30 2 * * *`) fires once, at the first
//!   valid time after the gap (03:00 local, 01:00 UTC) on that day; interval
//!   schedules (`*/15 * * * *`) skip the ticks inside the gap;
//! * **fall back** (2026-10-25: 02:00 to 02:59 happen twice): a fixed-time
//!   schedule (`30 2 * * *`) fires once, at the first 02:30 (00:30 UTC);
//!   interval schedules fire in both passes (every 15 minutes of real time).
//!
//! "Fixed-time" means one single value in each of the seconds, minutes and
//! hours fields; a list (`0,30 2 * * *`), a range or a step is an interval
//! schedule and fires in both passes of a repeated hour.
//!
//! [`CronSpec::next_after`] is a pure function of (expression, time zone,
//! instant), tested on both days.
//!
//! # Missed ticks
//!
//! A tick is fired by whichever maintenance leader sees it due. Ticks missed
//! while no worker ran (or while the leader was busy) are **collapsed into
//! one**: the schedule fires once and plans the first tick after now; the
//! number of ticks skipped that way is added to
//! [`ScheduleInfo::ticks_collapsed`] and logged.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use sqlx::Row;

use crate::doc::{check_subject, check_version};
use crate::error::{Error, Result};
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// How many missed ticks [`CronSpec::ticks_between`] counts at most (a
/// schedule firing every second, down for a day, has 86 400; counting stops
/// here and the count says "at least").
pub const MAX_COUNTED_TICKS: u64 = 10_000;

/// The longest cron expression the engine stores (`fetchq.schedule_cron_check`).
pub const MAX_CRON_CHARS: usize = 200;

/// Longer than any IANA time zone name (the longest has 32 characters).
const MAX_TIME_ZONE_CHARS: usize = 64;

/// The first 80 characters of a refused string, marked when cut, for error
/// messages that must stay short whatever the input.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(80).collect();
        out.push('…');
        out
    }
}

/// A parsed cron expression and the time zone it is read in.
///
/// ```
/// use fetchq_core::CronSpec;
/// use fetchq_core::chrono::{TimeZone, Utc};
///
/// let spec = CronSpec::parse("0 3 * * *", "Europe/Stockholm")?;
/// let after = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
/// // 03:00 in Stockholm is 02:00 UTC in winter
/// assert_eq!(spec.next_after(after)?, Utc.with_ymd_and_hms(2026, 1, 11, 2, 0, 0).unwrap());
/// assert!(CronSpec::parse("0 25 * * *", "UTC").is_err());
/// assert!(CronSpec::parse("0 3 * * *", "Mars/Olympus").is_err());
/// # Ok::<(), fetchq_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    tz: Tz,
}

impl CronSpec {
    /// Parses `expression` (5 fields `minute hour day month weekday`, or 6
    /// with seconds first, or `@yearly`, `@monthly`, `@weekly`, `@daily`,
    /// `@hourly`) in the IANA time zone `time_zone` (`UTC`, `Europe/Stockholm`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCron`] with croner's reason, [`Error::UnknownTimeZone`].
    ///
    /// ```
    /// let err = fetchq_core::CronSpec::parse("* * *", "UTC").unwrap_err();
    /// assert!(err.to_string().contains("* * *"));
    /// ```
    pub fn parse(expression: &str, time_zone: &str) -> Result<Self> {
        let expression = expression.trim();
        // the engine stores at most 200 characters; a longer (hostile) string
        // is refused before croner parses it, and never echoed whole
        if expression.chars().count() > MAX_CRON_CHARS {
            return Err(Error::InvalidCron {
                expression: shorten(expression),
                reason: format!(
                    "a cron expression is 1 to {MAX_CRON_CHARS} characters, got {}",
                    expression.chars().count()
                ),
            });
        }
        if time_zone.chars().count() > MAX_TIME_ZONE_CHARS {
            return Err(Error::UnknownTimeZone {
                time_zone: shorten(time_zone),
            });
        }
        let fields = expression.split_whitespace().count();
        if !expression.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(Error::InvalidCron {
                expression: expression.to_owned(),
                reason: format!(
                    "expected 5 fields (minute hour day month weekday) or 6 (seconds first), got {fields}"
                ),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| Error::InvalidCron {
                expression: expression.to_owned(),
                reason: e.to_string(),
            })?;
        let tz = Tz::from_str(time_zone).map_err(|_| Error::UnknownTimeZone {
            time_zone: time_zone.to_owned(),
        })?;
        let spec = CronSpec { cron, tz };
        // an expression that never matches (30 February) is refused here, not
        // found out by the leader
        spec.next_after(Utc::now())?;
        Ok(spec)
    }

    /// The first tick strictly after `after`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCron`] when no tick is found (croner gives up after
    /// searching some years ahead: `0 0 30 2 *` never matches).
    ///
    /// ```
    /// use fetchq_core::CronSpec;
    /// use fetchq_core::chrono::{TimeZone, Utc};
    /// let every_second = CronSpec::parse("* * * * * *", "UTC")?;
    /// let t = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    /// assert_eq!(every_second.next_after(t)?, t + fetchq_core::chrono::Duration::seconds(1));
    /// # Ok::<(), fetchq_core::Error>(())
    /// ```
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Error::InvalidCron {
                expression: self.cron.pattern.to_string(),
                reason: format!(
                    "no tick found after {after} ({e}): it never matches, like 30 February"
                ),
            })
    }

    /// How many ticks fall in `(from, to]`, counting at most
    /// [`MAX_COUNTED_TICKS`].
    ///
    /// ```
    /// use fetchq_core::CronSpec;
    /// use fetchq_core::chrono::{Duration, TimeZone, Utc};
    /// let every_minute = CronSpec::parse("* * * * *", "UTC")?;
    /// let t = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    /// assert_eq!(every_minute.ticks_between(t, t + Duration::minutes(10)), 10);
    /// # Ok::<(), fetchq_core::Error>(())
    /// ```
    pub fn ticks_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        let mut n = 0;
        let mut at = from;
        while n < MAX_COUNTED_TICKS {
            match self.next_after(at) {
                Ok(t) if t <= to => {
                    n += 1;
                    at = t;
                }
                _ => break,
            }
        }
        n
    }
}

/// A schedule to create or change with [`Client::schedule_set`]: fire the
/// document `subject` of `queue` on the calendar `cron` read in `time_zone`
/// (default UTC).
///
/// ```
/// let s = fetchq_core::CronSchedule::new("nightly-report", "0 3 * * *")
///     .time_zone("Europe/Stockholm")
///     .queue("reports")
///     .subject("nightly")
///     .payload(serde_json::json!({"kind": "full"}))
///     .priority(5);
/// assert_eq!(s.name, "nightly-report");
/// assert_eq!(s.time_zone, "Europe/Stockholm");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CronSchedule {
    /// Unique name: 1 to 100 characters of `A-Z a-z 0-9 _ . : -`.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// IANA time zone the expression is read in.
    pub time_zone: String,
    /// The queue of the document (empty: set it before [`Client::schedule_set`]).
    pub queue: String,
    /// The document's subject (default: the schedule's name).
    pub subject: String,
    /// The document's payload.
    pub payload: serde_json::Value,
    /// The document's version when a tick pushes it.
    pub version: i32,
    /// The document's priority.
    pub priority: i32,
}

impl CronSchedule {
    /// A schedule `name` on `cron`, in UTC, whose document's subject is the
    /// name, with an empty payload; set its queue.
    ///
    /// ```
    /// let s = fetchq_core::CronSchedule::new("tick", "*/5 * * * * *").queue("q");
    /// assert_eq!(s.subject, "tick");
    /// assert_eq!(s.time_zone, "UTC");
    /// ```
    pub fn new(name: impl Into<String>, cron: impl Into<String>) -> Self {
        let name = name.into();
        CronSchedule {
            subject: name.clone(),
            name,
            cron: cron.into(),
            time_zone: "UTC".into(),
            queue: String::new(),
            payload: serde_json::json!({}),
            version: 0,
            priority: 0,
        }
    }

    /// The time zone (`Europe/Stockholm`).
    ///
    /// ```
    /// let s = fetchq_core::CronSchedule::new("a", "0 3 * * *").time_zone("Asia/Tokyo");
    /// assert_eq!(s.time_zone, "Asia/Tokyo");
    /// ```
    pub fn time_zone(mut self, tz: impl Into<String>) -> Self {
        self.time_zone = tz.into();
        self
    }

    /// Short for [`time_zone`](Self::time_zone).
    ///
    /// ```
    /// let s = fetchq_core::CronSchedule::new("a", "0 3 * * *").tz("Asia/Tokyo");
    /// assert_eq!(s.time_zone, "Asia/Tokyo");
    /// ```
    pub fn tz(self, tz: impl Into<String>) -> Self {
        self.time_zone(tz)
    }

    /// The queue of the document.
    ///
    /// ```
    /// assert_eq!(fetchq_core::CronSchedule::new("a", "@daily").queue("q").queue, "q");
    /// ```
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// The document's subject.
    ///
    /// ```
    /// assert_eq!(fetchq_core::CronSchedule::new("a", "@daily").subject("s").subject, "s");
    /// ```
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// The document's payload.
    ///
    /// ```
    /// let s = fetchq_core::CronSchedule::new("a", "@daily").payload(serde_json::json!({"x": 1}));
    /// assert_eq!(s.payload["x"], 1);
    /// ```
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// The document's version (when a tick pushes it).
    ///
    /// ```
    /// assert_eq!(fetchq_core::CronSchedule::new("a", "@daily").version(2).version, 2);
    /// ```
    pub fn version(mut self, version: i32) -> Self {
        self.version = version;
        self
    }

    /// The document's priority.
    ///
    /// ```
    /// assert_eq!(fetchq_core::CronSchedule::new("a", "@daily").priority(9).priority, 9);
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Checks everything the client can check without the database: the
    /// name, the expression and time zone ([`CronSpec::parse`]), the queue
    /// name, the subject and the version.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] (name), [`Error::InvalidCron`],
    /// [`Error::UnknownTimeZone`], [`Error::InvalidQueueName`],
    /// [`Error::InvalidSubject`].
    ///
    /// ```
    /// use fetchq_core::{CronSchedule, Error};
    /// assert!(CronSchedule::new("a", "@daily").queue("q").validate().is_ok());
    /// let bad = CronSchedule::new("a", "61 * * * *").queue("q").validate();
    /// assert!(matches!(bad, Err(Error::InvalidCron { .. })));
    /// ```
    pub fn validate(&self) -> Result<CronSpec> {
        validate_schedule_name(&self.name)?;
        let spec = CronSpec::parse(&self.cron, &self.time_zone)?;
        validate_queue_name(&self.queue)?;
        check_subject(&self.subject)?;
        check_version(self.version)?;
        Ok(spec)
    }
}

/// Checks a schedule name as the engine does: 1 to 100 characters of `A-Z`,
/// `a-z`, `0-9`, `_`, `.`, `:` and `-`, not starting with `.`, `:` or `-`.
///
/// # Errors
///
/// [`Error::InvalidArgument`] saying why.
///
/// ```
/// assert!(fetchq_core::validate_schedule_name("nightly-report:v2").is_ok());
/// assert!(fetchq_core::validate_schedule_name("").is_err());
/// assert!(fetchq_core::validate_schedule_name("a/b").is_err());
/// ```
pub fn validate_schedule_name(name: &str) -> Result<()> {
    let ok = (1..=100).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            message: format!(
                "invalid schedule name {:?}: 1 to 100 characters of A-Z, a-z, 0-9, _ . : and -, not starting with . : or -",
                name.chars().take(120).collect::<String>()
            ),
        })
    }
}

/// A stored schedule, as [`Client::schedule_list`] returns it.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// for s in client.schedule_list().await? {
///     println!("{} {} ({}) next {:?}, {} ticks", s.name, s.cron, s.time_zone, s.next_tick_at, s.ticks);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleInfo {
    /// The schedule's name.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub time_zone: String,
    /// The document's queue.
    pub queue: String,
    /// The document's subject.
    pub subject: String,
    /// The document's payload.
    pub payload: serde_json::Value,
    /// The document's version when a tick pushes it.
    pub version: i32,
    /// The document's priority.
    pub priority: i32,
    /// The next tick; `None` until the maintenance leader planned it.
    pub next_tick_at: Option<DateTime<Utc>>,
    /// The last tick fired.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// Ticks fired.
    pub ticks: i64,
    /// Ticks missed and collapsed into a later one.
    pub ticks_collapsed: i64,
    /// Ticks skipped because the document was still active.
    pub ticks_skipped: i64,
    /// Why the schedule could not be planned or fired the last time.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed by [`Client::schedule_set`].
    pub updated_at: DateTime<Utc>,
}

/// What [`Client::schedule_set`] did.
///
/// ```
/// let s = fetchq_core::ScheduleSet { created: true, replanned: true };
/// assert!(s.created);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSet {
    /// A new schedule.
    pub created: bool,
    /// Its next tick is computed anew (new, or cron or time zone changed);
    /// false when a change kept the planned tick.
    pub replanned: bool,
}

/// What one [`Client::schedule_tick`] round did.
///
/// ```
/// let r = fetchq_core::ScheduleRound::default();
/// assert_eq!(r.fired(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleRound {
    /// Schedules whose first tick was planned.
    pub planned: u32,
    /// Ticks that pushed a new document.
    pub pushed: u32,
    /// Ticks that made an existing document due now.
    pub played: u32,
    /// Ticks skipped because the document was active.
    pub skipped: u32,
    /// Due ticks another caller fired first (or whose schedule changed meanwhile).
    pub lost: u32,
    /// Due ticks left for the next round: the schedule's row was locked by
    /// someone else, or the document's row for more than 1 s (a long-open
    /// transaction); nothing was fired.
    pub busy: u32,
    /// Missed ticks collapsed into the ones fired.
    pub collapsed: u64,
    /// Schedules that failed (recorded in their `last_error`).
    pub errors: u32,
}

impl ScheduleRound {
    /// Ticks fired by this round: pushed, played or skipped.
    ///
    /// ```
    /// let r = fetchq_core::ScheduleRound { pushed: 1, played: 2, skipped: 1, ..Default::default() };
    /// assert_eq!(r.fired(), 4);
    /// ```
    pub fn fired(&self) -> u32 {
        self.pushed + self.played + self.skipped
    }
}

impl Client {
    /// Creates or changes a schedule, after checking it fully
    /// ([`CronSchedule::validate`]). Changing the expression or the time zone
    /// replans it; any other change keeps the planned tick, so setting the
    /// same schedule at every start loses no due tick.
    ///
    /// # Errors
    ///
    /// Those of [`CronSchedule::validate`], [`Error::QueueNotFound`],
    /// [`Error::PayloadTooLarge`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// use fetchq_core::CronSchedule;
    /// client.schedule_set(&CronSchedule::new("nightly", "0 3 * * *").tz("Europe/Stockholm").queue("reports")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn schedule_set(&self, schedule: &CronSchedule) -> Result<ScheduleSet> {
        schedule.validate()?;
        let row = sqlx::query(sql!("schedule_set"))
            .bind(&schedule.name)
            .bind(&schedule.cron)
            .bind(&schedule.time_zone)
            .bind(&schedule.queue)
            .bind(&schedule.subject)
            .bind(&schedule.payload)
            .bind(schedule.version)
            .bind(schedule.priority)
            .fetch_one(self.exec())
            .await?;
        Ok(ScheduleSet {
            created: row.try_get(0)?,
            replanned: row.try_get(1)?,
        })
    }

    /// Deletes a schedule; the document it fired stays. Returns false when
    /// there was none.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name, database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// assert!(client.schedule_drop("nightly").await?);
    /// # Ok(()) }
    /// ```
    pub async fn schedule_drop(&self, name: &str) -> Result<bool> {
        validate_schedule_name(name)?;
        let n: i32 = sqlx::query_scalar(sql!("schedule_drop"))
            .bind(name)
            .fetch_one(self.exec())
            .await?;
        Ok(n > 0)
    }

    /// Every schedule, by name.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let names: Vec<String> = client.schedule_list().await?.into_iter().map(|s| s.name).collect();
    /// # Ok(()) }
    /// ```
    pub async fn schedule_list(&self) -> Result<Vec<ScheduleInfo>> {
        let rows = sqlx::query(sql!("schedule_list"))
            .fetch_all(self.exec())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleInfo {
                    name: r.try_get(0)?,
                    cron: r.try_get(1)?,
                    time_zone: r.try_get(2)?,
                    queue: r.try_get(3)?,
                    subject: r.try_get(4)?,
                    payload: r.try_get(5)?,
                    version: r.try_get(6)?,
                    priority: r.try_get(7)?,
                    next_tick_at: r.try_get(8)?,
                    last_tick_at: r.try_get(9)?,
                    ticks: r.try_get(10)?,
                    ticks_collapsed: r.try_get(11)?,
                    ticks_skipped: r.try_get(12)?,
                    last_error: r.try_get(13)?,
                    created_at: r.try_get(14)?,
                    updated_at: r.try_get(15)?,
                })
            })
            .collect()
    }

    /// One round of the schedules, as the maintenance leader runs it: plans
    /// up to `limit` schedules not planned yet (first tick after the
    /// database's now) and fires the due ones, each in its own transaction
    /// that fires only if its tick is still the one read (so concurrent
    /// rounds, from any number of processes, fire each tick once). Missed
    /// ticks are collapsed into one (counted in
    /// [`ScheduleRound::collapsed`]). A schedule that cannot be parsed or
    /// fired (its expression stored by hand is invalid, its queue is gone)
    /// gets its `last_error` and the round goes on with the others.
    ///
    /// # Errors
    ///
    /// Database errors that are not about one schedule (the connection).
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// let round = client.schedule_tick(100).await?;
    /// println!("{} ticks fired, {} collapsed", round.fired(), round.collapsed);
    /// # Ok(()) }
    /// ```
    pub async fn schedule_tick(&self, limit: i32) -> Result<ScheduleRound> {
        let mut round = ScheduleRound::default();
        let rows = sqlx::query(sql!("schedule_due"))
            .bind(limit)
            .fetch_all(self.exec())
            .await?;
        for row in rows {
            let name: String = row.try_get(0)?;
            let cron: String = row.try_get(1)?;
            let time_zone: String = row.try_get(2)?;
            let revision: i64 = row.try_get(3)?;
            let next_tick_at: Option<DateTime<Utc>> = row.try_get(4)?;
            let db_now: DateTime<Utc> = row.try_get(6)?;
            let planned = CronSpec::parse(&cron, &time_zone)
                .and_then(|spec| spec.next_after(db_now).map(|next| (spec, next)));
            let (spec, next) = match planned {
                Ok(p) => p,
                Err(e) => {
                    round.errors += 1;
                    self.schedule_failed(&name, revision, &e).await?;
                    continue;
                }
            };
            let Some(expected) = next_tick_at else {
                let n: i32 = sqlx::query_scalar(sql!("schedule_plan"))
                    .bind(&name)
                    .bind(revision)
                    .bind(next)
                    .fetch_one(self.exec())
                    .await?;
                round.planned += u32::from(n > 0);
                continue;
            };
            let collapsed = spec.ticks_between(expected, db_now);
            let fired = sqlx::query_scalar::<_, String>(sql!("schedule_fire"))
                .bind(&name)
                .bind(revision)
                .bind(expected)
                .bind(next)
                .bind(i64::try_from(collapsed).unwrap_or(i64::MAX))
                .fetch_one(self.exec())
                .await
                .map_err(Error::from);
            match fired {
                Ok(outcome) => {
                    match outcome.as_str() {
                        "pushed" => round.pushed += 1,
                        "played" => round.played += 1,
                        "skipped" => round.skipped += 1,
                        "busy" => {
                            round.busy += 1;
                            continue;
                        }
                        _ => {
                            round.lost += 1;
                            continue;
                        }
                    }
                    round.collapsed += collapsed;
                    if collapsed > 0 {
                        tracing::info!(schedule = %name, collapsed, tick = %expected, next = %next,
                            "schedule: missed ticks collapsed into one");
                    }
                    if outcome == "skipped" {
                        tracing::info!(schedule = %name, tick = %expected,
                            "schedule: tick skipped, the document is still active");
                    }
                }
                Err(e) if is_lock_trouble(&e) => {
                    // the document's row held by a long-open transaction (or a
                    // deadlock): this tick waits, the others go on
                    tracing::debug!(schedule = %name, error = %e, "schedule busy, left for the next round");
                    round.busy += 1;
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    round.errors += 1;
                    self.schedule_failed(&name, revision, &e).await?;
                }
            }
        }
        Ok(round)
    }

    /// How long until the earliest planned tick of any schedule, by the
    /// database's clock: zero when one is due, `None` when no schedule is
    /// planned. The maintenance leader sleeps this long (bounded by its
    /// interval) so that a tick fires on time, not up to one interval late.
    ///
    /// # Errors
    ///
    /// Database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// if let Some(wait) = client.schedule_next_in().await? {
    ///     println!("next tick in {wait:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn schedule_next_in(&self) -> Result<Option<std::time::Duration>> {
        let ms: Option<i64> = sqlx::query_scalar(sql!("schedule_next_in"))
            .fetch_one(self.exec())
            .await?;
        Ok(ms.map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }

    /// Records why a schedule failed, logged once per new reason.
    async fn schedule_failed(&self, name: &str, revision: i64, error: &Error) -> Result<()> {
        let changed: i32 = sqlx::query_scalar(sql!("schedule_error"))
            .bind(name)
            .bind(revision)
            .bind(error.to_string())
            .fetch_one(self.exec())
            .await?;
        if changed > 0 {
            tracing::warn!(schedule = %name, %error, "schedule cannot fire; see fetchq.schedules.last_error");
        }
        Ok(())
    }
}

/// A lock timeout, a deadlock or a serialization failure: about one
/// schedule's rows, not the connection.
fn is_lock_trouble(e: &Error) -> bool {
    match e {
        Error::Database(db) => db
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| matches!(c.as_ref(), "55P03" | "40P01" | "40001")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// Every tick in `(from, to]`.
    fn ticks(spec: &CronSpec, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = vec![];
        let mut at = from;
        while let Ok(t) = spec.next_after(at) {
            if t > to {
                break;
            }
            out.push(t);
            at = t;
        }
        out
    }

    #[test]
    fn spring_forward_fixed_time_fires_once_after_the_gap() {
        // Stockholm 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC)
        let spec = CronSpec::parse("30 2 * * *", "Europe/Stockholm").unwrap();
        let got = ticks(
            &spec,
            utc(2026, 3, 27, 12, 0, 0),
            utc(2026, 3, 30, 12, 0, 0),
        );
        assert_eq!(
            got,
            vec![
                utc(2026, 3, 28, 1, 30, 0), // 02:30 CET
                utc(2026, 3, 29, 1, 0, 0),  // no 02:30: 03:00 CEST, right after the gap
                utc(2026, 3, 30, 0, 30, 0), // 02:30 CEST
            ]
        );
    }

    #[test]
    fn spring_forward_interval_skips_the_gap() {
        let spec = CronSpec::parse("*/30 * * * *", "Europe/Stockholm").unwrap();
        let got = ticks(&spec, utc(2026, 3, 29, 0, 0, 0), utc(2026, 3, 29, 2, 0, 0));
        // local 01:30 CET, 03:00, 03:30, 04:00 CEST: nothing between
        assert_eq!(
            got,
            vec![
                utc(2026, 3, 29, 0, 30, 0),
                utc(2026, 3, 29, 1, 0, 0),
                utc(2026, 3, 29, 1, 30, 0),
                utc(2026, 3, 29, 2, 0, 0),
            ]
        );
    }

    #[test]
    fn fall_back_fixed_time_fires_once_at_the_first_pass() {
        // Stockholm 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC);
        // 02:30 happens at 00:30 UTC and again at 01:30 UTC
        let spec = CronSpec::parse("30 2 * * *", "Europe/Stockholm").unwrap();
        let got = ticks(
            &spec,
            utc(2026, 10, 24, 12, 0, 0),
            utc(2026, 10, 26, 12, 0, 0),
        );
        assert_eq!(
            got,
            vec![utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 26, 1, 30, 0)]
        );
    }

    #[test]
    fn fall_back_planned_from_inside_the_repeated_hour_skips_its_second_pass() {
        // the leader plans from "now", not from the tick: one that comes up
        // (or fires a collapsed tick) during the second pass of 02:00-02:59
        // must not plan the second 02:30 of the same day
        let spec = CronSpec::parse("30 2 * * *", "Europe/Stockholm").unwrap();
        for now in [
            utc(2026, 10, 25, 0, 30, 1), // just after the first 02:30
            utc(2026, 10, 25, 1, 0, 0),  // 02:00 CET, the second pass begins
            utc(2026, 10, 25, 1, 29, 59),
        ] {
            assert_eq!(
                spec.next_after(now).unwrap(),
                utc(2026, 10, 26, 1, 30, 0),
                "planned from {now}"
            );
        }
        // and on the spring-forward day, from inside the gap's UTC hour
        assert_eq!(
            spec.next_after(utc(2026, 3, 29, 0, 59, 59)).unwrap(),
            utc(2026, 3, 29, 1, 0, 0)
        );
        // fired at 03:00 CEST: not again that day
        assert_eq!(
            spec.next_after(utc(2026, 3, 29, 1, 0, 0)).unwrap(),
            utc(2026, 3, 30, 0, 30, 0)
        );
    }

    #[test]
    fn fall_back_interval_fires_in_both_passes() {
        let spec = CronSpec::parse("0,30 2 * * *", "Europe/Stockholm").unwrap();
        let got = ticks(
            &spec,
            utc(2026, 10, 24, 23, 0, 0),
            utc(2026, 10, 25, 3, 0, 0),
        );
        // a list of minutes is not a fixed-time job for croner (one value in
        // each of seconds, minutes and hours is): both passes fire
        assert_eq!(
            got,
            vec![
                utc(2026, 10, 25, 0, 0, 0),
                utc(2026, 10, 25, 0, 30, 0),
                utc(2026, 10, 25, 1, 0, 0),
                utc(2026, 10, 25, 1, 30, 0),
            ]
        );
        let every = CronSpec::parse("*/30 * * * *", "Europe/Stockholm").unwrap();
        let got = ticks(
            &every,
            utc(2026, 10, 25, 0, 0, 0),
            utc(2026, 10, 25, 2, 0, 0),
        );
        // 02:00, 02:30 CEST, 02:00, 02:30 CET, 03:00 CET: every 30 minutes of real time
        assert_eq!(
            got,
            vec![
                utc(2026, 10, 25, 0, 30, 0),
                utc(2026, 10, 25, 1, 0, 0),
                utc(2026, 10, 25, 1, 30, 0),
                utc(2026, 10, 25, 2, 0, 0),
            ]
        );
    }

    #[test]
    fn seconds_nicknames_and_bad_input() {
        let s = CronSpec::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 0, 0, 5)).unwrap(),
            utc(2026, 1, 1, 0, 0, 10)
        );
        let d = CronSpec::parse("@daily", "Asia/Tokyo").unwrap();
        assert_eq!(
            d.next_after(utc(2026, 1, 1, 16, 0, 0)).unwrap(),
            utc(2026, 1, 2, 15, 0, 0)
        );
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* 24 * * *",
            "x * * * *",
            "0 0 30 2 *",
        ] {
            assert!(
                matches!(CronSpec::parse(bad, "UTC"), Err(Error::InvalidCron { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            CronSpec::parse("* * * * *", "Europe/Stockholmx"),
            Err(Error::UnknownTimeZone { .. })
        ));
        let cap = CronSpec::parse("* * * * * *", "UTC").unwrap();
        let t = utc(2026, 1, 1, 0, 0, 0);
        assert_eq!(
            cap.ticks_between(t, t + chrono::Duration::days(1)),
            MAX_COUNTED_TICKS
        );
        assert_eq!(cap.ticks_between(t, t), 0);
    }
}
