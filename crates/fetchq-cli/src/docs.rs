//! `fetchq docs` (one keyset page, or a bulk action over the filter) and
//! `fetchq doc get|play|kill|drop|reschedule`.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};
use fetchq_core::{BulkAction, Client, DocFilter, DocState, Schedule, Status};
use serde_json::json;

use crate::BoxError;
use crate::output::{
    Refused, clean, doc_json, parse_status, parse_when, print_json, shell_quote, status_name,
    table, time,
};

/// Counting for a bulk action stops past this many documents.
const COUNT_CAP: u64 = 100_000;
/// Page size of the count and batch size of the bulk action.
const PAGE: i32 = 1000;

/// `fetchq docs QUEUE ...`
#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct DocsArgs {
    /// Queue name.
    queue: String,
    /// Only documents in this status (dead, planned, pending, active, completed, or -1..3).
    #[arg(long, value_parser = parse_status)]
    status: Option<Status>,
    /// Only documents of this version.
    #[arg(long)]
    version: Option<i32>,
    /// Only subjects starting with this text (matched literally).
    #[arg(long)]
    prefix: Option<String>,
    /// Page size (1 to 1000).
    #[arg(long, default_value_t = 50)]
    limit: i32,
    /// Start after this subject (the value printed at the end of the previous page).
    #[arg(long)]
    after: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Make every matching document due now, attempts reset.
    #[arg(long, group = "action")]
    play: bool,
    /// Kill every matching document.
    #[arg(long, group = "action")]
    kill: bool,
    /// Delete every matching document.
    #[arg(long, group = "action")]
    drop: bool,
    /// Plan every matching document at WHEN (now, RFC 3339, or a delay like 5m, 2d).
    #[arg(long, group = "action", value_name = "WHEN", value_parser = parse_when)]
    reschedule: Option<Schedule>,
    /// Do not ask for confirmation before a bulk action.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// `fetchq doc ACTION QUEUE SUBJECT`
#[derive(Subcommand)]
pub(crate) enum DocCommand {
    /// Print one document.
    Get {
        /// Queue name.
        queue: String,
        /// Subject.
        subject: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a document due now, attempts reset.
    Play {
        /// Queue name.
        queue: String,
        /// Subject.
        subject: String,
    },
    /// Kill a document (dead, its subject never re-admitted).
    Kill {
        /// Queue name.
        queue: String,
        /// Subject.
        subject: String,
    },
    /// Delete a document.
    Drop {
        /// Queue name.
        queue: String,
        /// Subject.
        subject: String,
    },
    /// Plan a document at WHEN, attempts reset.
    Reschedule {
        /// Queue name.
        queue: String,
        /// Subject.
        subject: String,
        /// now, an RFC 3339 time (2030-01-02T03:04:05Z) or a delay from now (5m, 2d).
        #[arg(value_parser = parse_when, allow_hyphen_values = true)]
        when: Schedule,
    },
}

fn filter_of(args: &DocsArgs) -> DocFilter {
    DocFilter {
        status: args.status,
        version: args.version,
        subject_prefix: args.prefix.clone(),
    }
}

/// `fetchq docs`: one page, or a bulk action when an action flag is given.
pub(crate) async fn run_docs(client: &Client, args: DocsArgs) -> Result<(), BoxError> {
    let filter = filter_of(&args);
    let action = if args.play {
        Some(BulkAction::Play)
    } else if args.kill {
        Some(BulkAction::Kill)
    } else if args.drop {
        Some(BulkAction::Drop)
    } else {
        args.reschedule.map(BulkAction::Reschedule)
    };
    if let Some(action) = action {
        return bulk(client, &args, &filter, action).await;
    }
    let page = client
        .doc_list(&args.queue, &filter, args.after.as_deref(), args.limit)
        .await?;
    let next_after = match page.last() {
        Some(last) if page.len() >= usize::try_from(args.limit).unwrap_or(usize::MAX) => {
            Some(last.subject.clone())
        }
        _ => None,
    };
    if args.json {
        print_json(&json!({
            "docs": page.iter().map(doc_json).collect::<Vec<_>>(),
            "next_after": next_after,
        }));
        return Ok(());
    }
    let mut rows = vec![
        [
            "SUBJECT",
            "STATUS",
            "VERSION",
            "PRIORITY",
            "ATTEMPTS",
            "ITERATIONS",
            "NEXT_ITERATION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in &page {
        rows.push(vec![
            clean(&d.subject),
            status_name(d.status).to_owned(),
            d.version.to_string(),
            d.priority.to_string(),
            d.attempts.to_string(),
            d.iterations.to_string(),
            time(&d.next_iteration),
        ]);
    }
    if page.is_empty() {
        println!("no documents");
    } else {
        table(&rows);
    }
    if let Some(next) = next_after {
        println!("next page: --after {}", shell_quote(&next));
    }
    Ok(())
}

fn verb(action: BulkAction) -> (&'static str, &'static str) {
    match action {
        BulkAction::Play => ("play", "played"),
        BulkAction::Kill => ("kill", "killed"),
        BulkAction::Drop => ("drop", "dropped"),
        BulkAction::Reschedule(_) => ("reschedule", "rescheduled"),
    }
}

/// Counts the matching documents by paging, up to [`COUNT_CAP`]; `None` past it.
async fn count(
    client: &Client,
    args: &DocsArgs,
    filter: &DocFilter,
) -> Result<Option<u64>, BoxError> {
    let mut after = args.after.clone();
    let mut n: u64 = 0;
    loop {
        let page = client
            .doc_list(&args.queue, filter, after.as_deref(), PAGE)
            .await?;
        n += page.len() as u64;
        if n > COUNT_CAP {
            return Ok(None);
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.subject.clone()),
            _ => return Ok(Some(n)),
        }
    }
}

async fn bulk(
    client: &Client,
    args: &DocsArgs,
    filter: &DocFilter,
    action: BulkAction,
) -> Result<(), BoxError> {
    let (verb, done) = verb(action);
    let counted = count(client, args, filter).await?;
    let what = match counted {
        Some(0) => {
            println!("no matching documents in {}: nothing to {verb}", args.queue);
            return Ok(());
        }
        Some(n) => format!("{n} document{}", if n == 1 { "" } else { "s" }),
        None => "more than 100,000 documents".to_owned(),
    };
    eprintln!("this will {verb} {what} of queue {}", args.queue);
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Box::new(Refused(format!(
                "refusing to {verb} {what} without confirmation: not a terminal; pass --yes"
            ))));
        }
        eprint!("{verb} {what}? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(Box::new(Refused("cancelled: nothing changed".into())));
        }
    }
    let progress = client
        .bulk_from(
            &args.queue,
            filter,
            action,
            PAGE,
            args.after.as_deref(),
            None,
        )
        .await?;
    println!("{done} {} documents of {}", progress.changed, args.queue);
    Ok(())
}

fn print_doc(d: &DocState) {
    let rows = [
        ("subject", clean(&d.subject)),
        ("status", status_name(d.status).to_owned()),
        ("version", d.version.to_string()),
        ("priority", d.priority.to_string()),
        (
            "key",
            d.key.as_deref().map(clean).unwrap_or_else(|| "-".into()),
        ),
        ("attempts", d.attempts.to_string()),
        ("iterations", d.iterations.to_string()),
        ("next_iteration", time(&d.next_iteration)),
        ("created_at", time(&d.created_at)),
        (
            "last_iteration",
            d.last_iteration
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "-".into()),
        ),
        ("payload", d.payload.to_string()),
    ];
    table(
        &rows
            .into_iter()
            .map(|(k, v)| vec![k.to_owned(), v])
            .collect::<Vec<_>>(),
    );
}

/// `fetchq doc ...`
pub(crate) async fn run_doc(client: &Client, cmd: DocCommand) -> Result<(), BoxError> {
    match cmd {
        DocCommand::Get {
            queue,
            subject,
            json,
        } => {
            let d = client.get(&queue, &subject).await?;
            if json {
                print_json(&doc_json(&d));
            } else {
                print_doc(&d);
            }
        }
        DocCommand::Play { queue, subject } => {
            client.play(&queue, &subject).await?;
            println!("{}: due now", clean(&subject));
        }
        DocCommand::Kill { queue, subject } => {
            client.force_kill(&queue, &subject).await?;
            println!("{}: killed", clean(&subject));
        }
        DocCommand::Drop { queue, subject } => {
            client.force_drop(&queue, &subject).await?;
            println!("{}: dropped", clean(&subject));
        }
        DocCommand::Reschedule {
            queue,
            subject,
            when,
        } => {
            client.force_reschedule(&queue, &subject, when).await?;
            let d = client.get(&queue, &subject).await?;
            println!(
                "{}: {} at {}",
                clean(&subject),
                status_name(d.status),
                time(&d.next_iteration)
            );
        }
    }
    Ok(())
}
