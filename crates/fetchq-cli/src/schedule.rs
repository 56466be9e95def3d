//! `fetchq schedule list|set|drop`: cron schedules (a document pushed, or
//! made due again, on a calendar by the workers' maintenance leader).

use clap::Subcommand;
use fetchq_core::{Client, CronSchedule, ScheduleInfo};
use serde_json::{Value, json};

use crate::BoxError;
use crate::output::{Refused, print_json};

/// `fetchq schedule ...`
#[derive(Subcommand)]
pub(crate) enum ScheduleCommand {
    /// List every schedule: expression, zone, document, next and last tick, counters, last error.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create or change a schedule (a new expression or zone replans it; any
    /// other change keeps the planned tick).
    #[command(allow_negative_numbers = true)]
    Set {
        /// Schedule name: 1-100 of A-Z a-z 0-9 _ . : - (not starting with . : -).
        name: String,
        /// Cron expression: 5 fields (minute hour day month weekday), 6 with
        /// seconds first, or @yearly, @monthly, @weekly, @daily, @hourly. Quote it.
        cron: String,
        /// The queue of the document.
        #[arg(long)]
        queue: String,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// The document's subject (default: the schedule's name).
        #[arg(long)]
        subject: Option<String>,
        /// The document's JSON payload.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// The document's version (when a tick pushes it).
        #[arg(long, default_value_t = 0)]
        version: i32,
        /// The document's priority.
        #[arg(long, default_value_t = 0)]
        priority: i32,
    },
    /// Delete a schedule (the document it fired stays).
    Drop {
        /// Schedule name.
        name: String,
    },
}

/// A schedule as JSON (the shape of the REST API's).
pub(crate) fn schedule_json(s: &ScheduleInfo) -> Value {
    json!({
        "name": s.name, "cron": s.cron, "time_zone": s.time_zone, "queue": s.queue,
        "subject": s.subject, "payload": s.payload, "version": s.version, "priority": s.priority,
        "next_tick_at": s.next_tick_at, "last_tick_at": s.last_tick_at, "ticks": s.ticks,
        "ticks_collapsed": s.ticks_collapsed, "ticks_skipped": s.ticks_skipped,
        "last_error": s.last_error, "created_at": s.created_at, "updated_at": s.updated_at,
    })
}

/// Runs one `fetchq schedule` command.
pub(crate) async fn run(client: &Client, cmd: ScheduleCommand) -> Result<(), BoxError> {
    match cmd {
        ScheduleCommand::List { json: true } => {
            let list: Vec<Value> = client
                .schedule_list()
                .await?
                .iter()
                .map(schedule_json)
                .collect();
            print_json(&json!({ "schedules": list }));
        }
        ScheduleCommand::List { json: false } => {
            for s in client.schedule_list().await? {
                let next = s
                    .next_tick_at
                    .map_or_else(|| "not planned yet".to_owned(), |t| t.to_rfc3339());
                println!(
                    "{}\t{:?} {}\t{}/{}\tnext {}\tticks {} (collapsed {}, skipped {}){}",
                    s.name,
                    s.cron,
                    s.time_zone,
                    s.queue,
                    s.subject,
                    next,
                    s.ticks,
                    s.ticks_collapsed,
                    s.ticks_skipped,
                    s.last_error
                        .map(|e| format!("\terror: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        ScheduleCommand::Set {
            name,
            cron,
            queue,
            tz,
            subject,
            payload,
            version,
            priority,
        } => {
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|e| Refused(format!("the payload is not valid JSON: {e}")))?;
            let mut s = CronSchedule::new(name, cron)
                .tz(tz)
                .queue(queue)
                .payload(payload)
                .version(version)
                .priority(priority);
            if let Some(subject) = subject {
                s = s.subject(subject);
            }
            // the client's checks are refusals before anything changed
            s.validate().map_err(|e| Refused(e.to_string()))?;
            let set = client.schedule_set(&s).await?;
            println!(
                "{}: {}{}",
                s.name,
                if set.created { "created" } else { "changed" },
                if set.replanned {
                    " (the next tick is planned by the workers' maintenance)"
                } else {
                    " (next tick kept)"
                }
            );
        }
        ScheduleCommand::Drop { name } => {
            let dropped = client.schedule_drop(&name).await?;
            println!(
                "{name}: {}",
                if dropped { "dropped" } else { "did not exist" }
            );
        }
    }
    Ok(())
}
