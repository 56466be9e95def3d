//! `fetchq queue set QUEUE ...`: change a queue's settings.

use std::time::Duration;

use clap::Args;
use fetchq_core::{Client, RateLimit, Retention};

use crate::BoxError;
use crate::output::{Refused, parse_duration};

/// `fetchq queue set QUEUE ...`
#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct SetArgs {
    /// Queue name.
    name: String,
    /// Failed attempts before a document is dead.
    #[arg(long)]
    max_attempts: Option<i32>,
    /// The version workers target by default.
    #[arg(long)]
    current_version: Option<i32>,
    /// How long error logs are kept (e.g. 48h, 7d).
    #[arg(long, value_parser = parse_duration)]
    logs_retention: Option<Duration>,
    /// Largest payload accepted, in bytes.
    #[arg(long)]
    max_payload_size: Option<i32>,
    /// Base delay of the retry backoff (e.g. 1s).
    #[arg(long, value_parser = parse_duration)]
    retry_delay: Option<Duration>,
    /// Cap of the retry backoff (e.g. 1h).
    #[arg(long, value_parser = parse_duration)]
    retry_delay_max: Option<Duration>,
    /// Spread of the retry backoff, 0 to 1.
    #[arg(long)]
    retry_jitter: Option<f64>,
    /// At most N leases in any window across every worker, as N/WINDOW
    /// (5/s, 20/1s, 100/10m); `none` removes the limit.
    #[arg(long, value_parser = parse_rate_limit)]
    rate_limit: Option<RateSetting>,
    /// At most N active documents with one key, across every worker (1 to
    /// 10000); `none` removes the cap.
    #[arg(long, value_parser = parse_key_concurrency)]
    key_concurrency: Option<KeyCap>,
    /// What happens to completed documents: `keep` (the default), `at-once`
    /// (the completion deletes them), or a duration such as 7d (maintenance
    /// deletes them that long after completion).
    #[arg(long, value_parser = parse_completed_retention)]
    completed_retention: Option<Retention>,
}

fn parse_completed_retention(text: &str) -> Result<Retention, String> {
    text.parse().map_err(|e: fetchq_core::Error| e.to_string())
}

/// What `--key-concurrency` asks for: `None` removes the cap.
#[derive(Clone, Copy)]
pub(crate) struct KeyCap(Option<i32>);

fn parse_key_concurrency(text: &str) -> Result<KeyCap, String> {
    match text.trim() {
        "none" | "off" => Ok(KeyCap(None)),
        t => match t.parse::<i32>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(KeyCap(Some(n))),
            _ => Err(format!(
                "key concurrency must be 1 to 10000 or none, got {t:?}"
            )),
        },
    }
}

/// What `--rate-limit` asks for.
#[derive(Clone, Copy)]
pub(crate) enum RateSetting {
    /// Remove the limit.
    Off,
    /// Set it.
    Limit(RateLimit),
}

fn parse_rate_limit(text: &str) -> Result<RateSetting, String> {
    match text.trim() {
        "none" | "off" => Ok(RateSetting::Off),
        t => t
            .parse()
            .map(RateSetting::Limit)
            .map_err(|e: fetchq_core::Error| e.to_string()),
    }
}

/// Applies every given setting, then prints the queue's settings.
pub(crate) async fn run(client: &Client, a: SetArgs) -> Result<(), BoxError> {
    let q = &a.name;
    let any = a.max_attempts.is_some()
        || a.current_version.is_some()
        || a.logs_retention.is_some()
        || a.max_payload_size.is_some()
        || a.retry_delay.is_some()
        || a.retry_delay_max.is_some()
        || a.retry_jitter.is_some()
        || a.rate_limit.is_some()
        || a.key_concurrency.is_some()
        || a.completed_retention.is_some();
    if !any {
        return Err(Box::new(Refused(
            "nothing to set: pass at least one of --max-attempts, --current-version, \
             --logs-retention, --max-payload-size, --retry-delay, --retry-delay-max, --retry-jitter, \
             --rate-limit, --key-concurrency, --completed-retention"
                .into(),
        )));
    }
    // fails on an unknown queue before anything changes
    let before = client.queue_status(q).await?;
    if let Some(n) = a.max_attempts {
        client.queue_set_max_attempts(q, n).await?;
    }
    if let Some(v) = a.current_version {
        client.queue_set_current_version(q, v).await?;
    }
    if let Some(r) = a.logs_retention {
        client.queue_set_logs_retention(q, r).await?;
    }
    if let Some(b) = a.max_payload_size {
        client.queue_set_max_payload_size(q, b).await?;
    }
    if a.retry_delay.is_some() || a.retry_delay_max.is_some() || a.retry_jitter.is_some() {
        client
            .queue_set_retry_backoff(
                q,
                a.retry_delay.unwrap_or(before.retry_delay),
                a.retry_delay_max.unwrap_or(before.retry_delay_max),
                a.retry_jitter.unwrap_or(before.retry_jitter),
            )
            .await?;
    }
    match a.rate_limit {
        Some(RateSetting::Off) => client.queue_set_rate_limit(q, None).await?,
        Some(RateSetting::Limit(r)) => client.queue_set_rate_limit(q, Some(r)).await?,
        None => {}
    }
    if let Some(KeyCap(cap)) = a.key_concurrency {
        client.queue_set_key_concurrency(q, cap).await?;
    }
    if let Some(r) = a.completed_retention {
        client.queue_set_completed_retention(q, r).await?;
    }
    let s = client.queue_status(q).await?;
    println!(
        "{}: max_attempts {}  current_version {}  logs_retention {}  max_payload_size {}  \
         retry_delay {}  retry_delay_max {}  retry_jitter {}  rate_limit {}  key_concurrency {}  completed_retention {}",
        s.name,
        s.max_attempts,
        s.current_version,
        humantime::format_duration(s.logs_retention),
        s.max_payload_size,
        humantime::format_duration(s.retry_delay),
        humantime::format_duration(s.retry_delay_max),
        s.retry_jitter,
        s.rate_limit
            .map_or_else(|| "none".to_owned(), |r| r.to_string()),
        s.key_concurrency
            .map_or_else(|| "none".to_owned(), |n| n.to_string()),
        s.completed_retention
    );
    Ok(())
}
