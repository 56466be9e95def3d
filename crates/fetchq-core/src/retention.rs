//! Retention of completed documents, a queue setting (see
//! `sql/migrations/0020_retention.sql`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;

use crate::error::{Error, Result};
use crate::queue::validate_queue_name;
use crate::{Client, sql};

/// The longest retention: 100 years as PostgreSQL compares intervals (a
/// year is 360 days there), the limit `fetchq.queue_set_completed_retention`
/// applies to the microseconds this crate binds.
const MAX_RETENTION: Duration = Duration::from_secs(36_000 * 86_400);

/// What happens to a queue's completed documents.
///
/// It reads and prints as `keep`, `at-once`, or a
/// [humantime](https://docs.rs/humantime) duration for
/// [`After`](Self::After):
///
/// ```
/// use std::time::Duration;
/// use fetchq_core::Retention;
///
/// assert_eq!("keep".parse::<Retention>().unwrap(), Retention::Keep);
/// assert_eq!("at-once".parse::<Retention>().unwrap(), Retention::AtOnce);
/// assert_eq!("7d".parse::<Retention>().unwrap(), Retention::After(Duration::from_secs(7 * 86_400)));
/// assert_eq!(Retention::After(Duration::from_secs(3600)).to_string(), "1h");
/// assert!("-1h".parse::<Retention>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Retention {
    /// Completed documents stay (the default): a later push of the same
    /// subject is ignored, so a subject is processed once.
    #[default]
    Keep,
    /// Maintenance deletes completed documents this long after their
    /// completion, in batches (the `mnt` job's limit per pass); until then a
    /// push of the subject is ignored, afterwards it is admitted as new.
    /// `After(Duration::ZERO)` is [`AtOnce`](Self::AtOnce); at most 100
    /// years.
    After(Duration),
    /// The completion deletes the document instead of keeping it completed:
    /// the subject can be pushed again right away.
    AtOnce,
}

impl Retention {
    /// The interval the database stores: `None` keeps, zero deletes at once.
    /// A duration is stored in whole microseconds.
    fn to_db(self) -> Result<Option<Duration>> {
        match self {
            Self::Keep => Ok(None),
            Self::AtOnce => Ok(Some(Duration::ZERO)),
            Self::After(d) => {
                let micros = i64::try_from(d.as_micros()).map_err(|_| Error::InvalidArgument {
                    message: format!(
                        "completed retention is too long: {}",
                        humantime::format_duration(d)
                    ),
                })?;
                if d > MAX_RETENTION {
                    // checked here too, so a caller setting several things
                    // (a REST PATCH, `fetchq queue set`) refuses before any
                    return Err(Error::InvalidArgument {
                        message: format!(
                            "completed retention must be at most 100 years, got {}",
                            humantime::format_duration(d)
                        ),
                    });
                }
                if micros == 0 && !d.is_zero() {
                    return Err(Error::InvalidArgument {
                        message: format!(
                            "completed retention must be 0 or at least 1 microsecond, got {d:?}"
                        ),
                    });
                }
                Ok(Some(Duration::from_micros(micros.unsigned_abs())))
            }
        }
    }

    /// From the stored interval in seconds (`extract(epoch ...)`).
    pub(crate) fn from_db(secs: Option<f64>) -> Self {
        match secs {
            None => Self::Keep,
            Some(s) if s <= 0.0 => Self::AtOnce,
            Some(s) => Duration::try_from_secs_f64(s).map_or(Self::Keep, Self::After),
        }
    }
}

impl FromStr for Retention {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "keep" | "none" | "forever" => return Ok(Self::Keep),
            "at-once" | "at_once" | "atonce" | "now" | "0" => return Ok(Self::AtOnce),
            _ => {}
        }
        let d = humantime::parse_duration(t).map_err(|_| Error::InvalidArgument {
            message: format!(
                "a completed retention is keep, at-once or a duration like 10m, 24h or 7d, got {:?}",
                t.chars().take(40).collect::<String>()
            ),
        })?;
        let r = if d.is_zero() {
            Self::AtOnce
        } else {
            Self::After(d)
        };
        r.to_db()?;
        Ok(r)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keep => f.write_str("keep"),
            Self::AtOnce => f.write_str("at-once"),
            Self::After(d) if d.is_zero() => f.write_str("at-once"),
            Self::After(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl Client {
    /// Sets what happens to the queue's completed documents: kept (the
    /// default), deleted by maintenance some time after their completion, or
    /// deleted by the completion itself. The counters stay exact either way
    /// (a deleted document leaves `cnt` and its version's count; `processed`
    /// still counts its completion).
    ///
    /// Setting [`Retention::After`] or [`Retention::AtOnce`] builds an index
    /// of the queue's completed documents once (writes to the queue wait
    /// meanwhile), which maintenance reads; [`Retention::Keep`] drops it. With
    /// `AtOnce`, documents completed before the change are deleted by
    /// maintenance, batch by batch.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a duration under 1 microsecond (other
    /// than zero) or over 100 years (nothing changes), [`Error::QueueNotFound`],
    /// database errors.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use fetchq_core::Retention;
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// // a mailer: every subject is new, nothing to remember
    /// client.queue_set_completed_retention("mails", Retention::AtOnce).await?;
    /// // keep a day of history, then forget
    /// client
    ///     .queue_set_completed_retention("jobs", Retention::After(Duration::from_secs(86_400)))
    ///     .await?;
    /// assert_eq!(
    ///     client.queue_status("jobs").await?.completed_retention,
    ///     Retention::After(Duration::from_secs(86_400))
    /// );
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_completed_retention(
        &self,
        queue: &str,
        retention: Retention,
    ) -> Result<()> {
        validate_queue_name(queue)?;
        let interval = retention.to_db()?;
        sqlx::query(sql!("queue_set_completed_retention"))
            .bind(queue)
            .bind(interval)
            .fetch_one(self.exec())
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` completed documents of the queue that are past
    /// its [`Retention`] (oldest first) and returns how many. Maintenance
    /// ([`mnt_run`](Self::mnt_run), the worker runtime's leader) does this on
    /// every pass; call it to drain a backlog faster. A queue that keeps its
    /// documents returns 0 without reading them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a limit below 1,
    /// [`Error::QueueNotFound`], database errors.
    ///
    /// ```no_run
    /// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
    /// while client.mnt_drop_completed("mails", 5_000).await? > 0 {}
    /// # Ok(()) }
    /// ```
    pub async fn mnt_drop_completed(&self, queue: &str, limit: i32) -> Result<i32> {
        validate_queue_name(queue)?;
        let row = sqlx::query(sql!("mnt_drop_completed"))
            .bind(queue)
            .bind(limit)
            .fetch_one(self.exec())
            .await?;
        Ok(row.try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_prints() {
        for (text, want) in [
            ("keep", Retention::Keep),
            ("KEEP", Retention::Keep),
            ("at-once", Retention::AtOnce),
            ("at_once", Retention::AtOnce),
            ("0", Retention::AtOnce),
            ("0s", Retention::AtOnce),
            ("90m", Retention::After(Duration::from_secs(5400))),
        ] {
            assert_eq!(text.parse::<Retention>().unwrap(), want, "{text}");
        }
        for bad in ["", "-1h", "soon", "1 fortnight", "1ns"] {
            assert!(bad.parse::<Retention>().is_err(), "{bad} should be refused");
        }
        for r in [
            Retention::Keep,
            Retention::AtOnce,
            Retention::After(Duration::from_secs(7 * 86_400)),
        ] {
            assert_eq!(r.to_string().parse::<Retention>().unwrap(), r);
        }
    }

    #[test]
    fn stored_intervals_read_back() {
        assert_eq!(Retention::from_db(None), Retention::Keep);
        assert_eq!(Retention::from_db(Some(0.0)), Retention::AtOnce);
        assert_eq!(
            Retention::from_db(Some(60.0)),
            Retention::After(Duration::from_secs(60))
        );
        assert_eq!(
            Retention::After(Duration::ZERO).to_db().unwrap(),
            Some(Duration::ZERO)
        );
        assert_eq!(
            Retention::After(Duration::from_nanos(1_500))
                .to_db()
                .unwrap(),
            Some(Duration::from_micros(1))
        );
        assert!(Retention::After(Duration::from_nanos(999)).to_db().is_err());
        assert!(Retention::After(Duration::MAX).to_db().is_err());
        // the database's 100 years: 36,000 days of 24 hours
        let limit = Duration::from_secs(36_000 * 86_400);
        assert!(Retention::After(limit).to_db().is_ok());
        assert!(
            Retention::After(limit + Duration::from_micros(1))
                .to_db()
                .is_err()
        );
        assert!("101years".parse::<Retention>().is_err());
    }
}
