//! `fetchq`: install the schema, inspect queues, run maintenance, build the
//! PostgreSQL extension, and manage a private development server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod docs;
mod dump;
mod logs;
mod output;
mod push;
mod queue_set;
mod restore;
mod schedule;
mod serve;
mod status;
use fetchq_core::embedded::{EmbeddedPostgres, default_data_dir};
use fetchq_core::{Client, ClientOptions, extension};
use sqlx::Connection;

#[derive(Parser)]
#[command(
    name = "fetchq",
    version,
    about = "fetchq: a Postgres-backed queue of unique, repetitive documents"
)]
struct Cli {
    /// PostgreSQL connection URL (also read from DATABASE_URL).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The URL is a transaction pooler (PgBouncer `pool_mode = transaction`):
    /// every statement is sent unnamed inside its own transaction (also read
    /// from FETCHQ_TRANSACTION_POOLING=true). `dump` and `restore` refuse it:
    /// give them a direct or session-pooled URL.
    #[arg(long, env = "FETCHQ_TRANSACTION_POOLING", global = true)]
    transaction_pooling: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install or upgrade the fetchq schema (idempotent, safe to run concurrently).
    Init,
    /// Print the engine and schema versions.
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Manage cron schedules (documents pushed on a calendar by the workers).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Push a document (a duplicate subject is ignored), or `--jsonl` documents from stdin.
    Push(push::PushArgs),
    /// Every queue: counts by status, paused, current version, lag, throughput.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// For queues without a metric snapshot in the last 15 minutes, measure
        /// the throughput over this long (two reads; `0s`: do not measure).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        sample: std::time::Duration,
    },
    /// List a queue's documents (one page), or act on every match (--play, --kill, --drop, --reschedule).
    Docs(docs::DocsArgs),
    /// Show or act on one document.
    #[command(subcommand)]
    Doc(docs::DocCommand),
    /// Print a queue's error log (newest entries, oldest first), or follow it.
    Logs(logs::LogsArgs),
    /// Everything known about a subject in every queue.
    Trace {
        /// The subject.
        subject: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a queue's counters (packing pending writes first).
    Metrics {
        /// Queue name.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Dump queues to one compressed, checksummed file (one consistent snapshot).
    Dump(dump::DumpArgs),
    /// Restore a dump in one transaction (all or nothing).
    Restore(restore::RestoreArgs),
    /// Run every queue's maintenance once (lapsed workers' leases, orphans,
    /// retention, snapshots, counters).
    Mnt,
    /// Rebuild the queues' bloated primary keys (over twice their packed
    /// size) with REINDEX INDEX CONCURRENTLY, after dropping what failed
    /// concurrent builds left behind; reads and writes go on meanwhile. The
    /// workers' maintenance leader does this once a minute.
    Reindex {
        /// How long each lock wait may last (for transactions open on a
        /// queue's table) before the rebuild gives up.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        lock_timeout: std::time::Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The registered worker processes (schema 21): host, pid, last renewal,
    /// and whether maintenance will release their leases (lost).
    Workers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the PostgreSQL extension files (fetchq.control and scripts).
    Extension {
        /// Target directory; default: the extension directory of the local PostgreSQL.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Serve the REST API (v1) with scoped tokens and an OpenAPI document.
    Serve(serve::ServeArgs),
    /// A private PostgreSQL for development, in .fetchq/pg (or $FETCHQ_PGDATA).
    #[command(subcommand, name = "dev-db")]
    DevDb(DevDbCommand),
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Create a queue (no-op if it exists).
    Create {
        /// Queue name: 1-40 of a-z, 0-9, _ starting with a letter.
        name: String,
    },
    /// Drop a queue and all its documents.
    Drop {
        /// Queue name.
        name: String,
    },
    /// List queues.
    List {
        /// Print JSON (every setting of every queue).
        #[arg(long)]
        json: bool,
    },
    /// Pause a queue (picks return nothing).
    Pause {
        /// Queue name.
        name: String,
    },
    /// Resume a paused queue.
    Resume {
        /// Queue name.
        name: String,
    },
    /// Change a queue's settings.
    Set(queue_set::SetArgs),
}

#[derive(Subcommand)]
enum DevDbCommand {
    /// Start (or reuse) the private server and print its URL.
    Start {
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Stop the private server.
    Stop {
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fetchq: {e}");
            if let Some(e) = e.downcast_ref::<fetchq_backup::Error>() {
                return ExitCode::from(restore::exit_code(e));
            }
            if e.downcast_ref::<serve::Refused>().is_some()
                || e.downcast_ref::<output::Refused>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Where the commands connect: the database URL and whether it is a
/// transaction pooler.
#[derive(Clone, Copy)]
pub(crate) struct Db<'a> {
    pub(crate) url: Option<&'a str>,
    pub(crate) transaction_pooling: bool,
}

/// How `fetchq reindex` says why a rebuild was left for later.
fn skip_reason(why: fetchq_core::Skip) -> &'static str {
    match why {
        fetchq_core::Skip::LockTimeout => "lock timeout (a transaction open on the table?)",
        fetchq_core::Skip::Yielded => "yielded to a session waiting for the table",
        fetchq_core::Skip::Deadlock => "deadlock",
        _ => "other",
    }
}

async fn connect(db: Db<'_>) -> Result<Client, BoxError> {
    let url = db.url.ok_or(
        "no database: pass --database-url or set DATABASE_URL (for a local one: `fetchq dev-db start`)",
    )?;
    probe(url).await?;
    let options = ClientOptions::new().transaction_pooling(db.transaction_pooling);
    Ok(Client::connect_opts(url, &options).await?)
}

/// One direct connection first, so an unreachable server fails fast with its
/// real cause ("connection refused at HOST:PORT") instead of the pool's
/// retries ending in "pool timed out".
async fn probe(url: &str) -> Result<(), BoxError> {
    let opts: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| format!("bad database URL: {e}"))?;
    let at = match opts.get_socket() {
        Some(dir) => format!("{} (port {})", dir.display(), opts.get_port()),
        None => format!("{}:{}", opts.get_host(), opts.get_port()),
    };
    match tokio::time::timeout(
        fetchq_core::CONNECT_ACQUIRE_TIMEOUT,
        sqlx::PgConnection::connect_with(&opts),
    )
    .await
    {
        Err(_) => Err(format!(
            "no answer from {at} within {} s",
            fetchq_core::CONNECT_ACQUIRE_TIMEOUT.as_secs()
        )
        .into()),
        Ok(Err(sqlx::Error::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(format!("connection refused at {at}: is PostgreSQL running there?").into())
        }
        Ok(Err(sqlx::Error::Io(e))) => Err(format!("cannot connect to {at}: {e}").into()),
        Ok(Err(e)) => Err(format!("cannot connect to {at}: {e}").into()),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let url = cli.database_url.as_deref().filter(|u| !u.is_empty());
    let db = Db {
        url,
        transaction_pooling: cli.transaction_pooling,
    };
    match cli.command {
        Command::Init => {
            let report = connect(db).await?.migrate().await?;
            if report.applied.is_empty() {
                println!(
                    "fetchq schema is up to date (version {})",
                    report.to_version
                );
            } else {
                println!(
                    "fetchq schema upgraded from {} to {} (applied {:?})",
                    report.from_version, report.to_version, report.applied
                );
            }
        }
        Command::Info { json } => {
            let info = connect(db).await?.info().await?;
            if json {
                output::print_json(&serde_json::json!({
                    "version": info.version,
                    "schema_version": info.schema_version,
                    "cli_version": env!("CARGO_PKG_VERSION"),
                }));
            } else {
                println!("fetchq {} (schema {})", info.version, info.schema_version);
            }
        }
        Command::Queue(cmd) => {
            let client = connect(db).await?;
            match cmd {
                QueueCommand::Create { name } => {
                    let created = client.queue_create(&name).await?;
                    println!(
                        "{name}: {}",
                        if created { "created" } else { "already exists" }
                    );
                }
                QueueCommand::Drop { name } => {
                    let dropped = client.queue_drop(&name).await?;
                    println!(
                        "{name}: {}",
                        if dropped { "dropped" } else { "did not exist" }
                    );
                }
                QueueCommand::List { json: true } => {
                    let queues: Vec<_> = client
                        .queue_list()
                        .await?
                        .into_iter()
                        .map(|q| {
                            serde_json::json!({
                                "id": q.id,
                                "name": q.name,
                                "paused": !q.is_active,
                                "current_version": q.current_version,
                                "max_attempts": q.max_attempts,
                                "logs_retention_seconds": q.logs_retention.as_secs_f64(),
                                "max_payload_size": q.max_payload_size,
                                "retry_delay_seconds": q.retry_delay.as_secs_f64(),
                                "retry_delay_max_seconds": q.retry_delay_max.as_secs_f64(),
                                "retry_jitter": q.retry_jitter,
                                "rate_limit": q.rate_limit.map(|r| r.to_string()),
                                "key_concurrency": q.key_concurrency,
                                "completed_retention": q.completed_retention.to_string(),
                                "created_at": q.created_at,
                            })
                        })
                        .collect();
                    output::print_json(&serde_json::json!({ "queues": queues }));
                }
                QueueCommand::List { json: false } => {
                    for q in client.queue_list().await? {
                        let rate = q
                            .rate_limit
                            .map(|r| format!("\trate_limit {r}"))
                            .unwrap_or_default();
                        println!(
                            "{}\t{}\tversion {}\tmax_attempts {}{rate}",
                            q.name,
                            if q.is_active { "active" } else { "paused" },
                            q.current_version,
                            q.max_attempts
                        );
                    }
                }
                QueueCommand::Pause { name } => {
                    client.queue_pause(&name).await?;
                    println!("{name}: paused");
                }
                QueueCommand::Resume { name } => {
                    client.queue_resume(&name).await?;
                    println!("{name}: resumed");
                }
                QueueCommand::Set(args) => queue_set::run(&client, args).await?,
            }
        }
        Command::Schedule(cmd) => schedule::run(&connect(db).await?, cmd).await?,
        Command::Push(args) => push::run(&connect(db).await?, args).await?,
        Command::Status { json, sample } => status::run(&connect(db).await?, json, sample).await?,
        Command::Docs(args) => docs::run_docs(&connect(db).await?, args).await?,
        Command::Doc(cmd) => docs::run_doc(&connect(db).await?, cmd).await?,
        Command::Logs(args) => logs::run_logs(&connect(db).await?, args).await?,
        Command::Trace { subject, json } => {
            logs::run_trace(&connect(db).await?, &subject, json).await?
        }
        Command::Metrics { queue, json } => {
            let client = connect(db).await?;
            client.metric_log_pack().await?;
            let c = client.metric_get_common(&queue).await?;
            if json {
                output::print_json(&serde_json::json!({
                    "queue": queue,
                    "total": c.total, "planned": c.planned, "pending": c.pending,
                    "active": c.active, "completed": c.completed, "dead": c.dead,
                    "entered": c.entered, "picked": c.picked, "processed": c.processed,
                    "rescheduled": c.rescheduled, "rejected": c.rejected,
                    "orphans": c.orphans, "dropped": c.dropped, "errors": c.errors,
                }));
                return Ok(());
            }
            println!(
                "documents {}  planned {}  pending {}  active {}  completed {}  dead {}\n\
                 entered {}  picked {}  processed {}  rescheduled {}  rejected {}  orphans {}  dropped {}",
                c.total,
                c.planned,
                c.pending,
                c.active,
                c.completed,
                c.dead,
                c.entered,
                c.picked,
                c.processed,
                c.rescheduled,
                c.rejected,
                c.orphans,
                c.dropped
            );
        }
        Command::Dump(args) => dump::run(&connect(db).await?, args).await?,
        Command::Restore(args) => restore::run(&connect(db).await?, args).await?,
        Command::Mnt => {
            let client = connect(db).await?;
            // registrations exist from schema 21 on
            if client.info().await?.schema_version >= 21 {
                let rescue = client.mnt_rescue_workers().await?;
                println!(
                    "released {} documents of {} lapsed workers",
                    rescue.released, rescue.workers
                );
            }
            let (jobs, packed) = client.mnt().await?;
            println!("ran {jobs} maintenance jobs, packed {packed} metric writes");
        }
        Command::Reindex { lock_timeout, json } => {
            let client = connect(db).await?;
            output::refuse_transaction_pooling(&client, "index rebuilds")?;
            let done = client.reindex_bloated(lock_timeout).await?;
            if json {
                let rebuilt: Vec<serde_json::Value> = done
                    .rebuilt
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "index": r.name,
                            "bytes_before": r.bytes_before,
                            "bytes_after": r.bytes_after,
                        })
                    })
                    .collect();
                let skipped: Vec<serde_json::Value> = done
                    .skipped
                    .iter()
                    .map(|s| serde_json::json!({"index": s.name, "why": skip_reason(s.why)}))
                    .collect();
                output::print_json(&serde_json::json!({
                    "rebuilt": rebuilt,
                    "dropped": done.dropped,
                    "skipped": skipped,
                }));
            } else {
                for index in &done.dropped {
                    println!("dropped {index} (left by a failed build)");
                }
                for r in &done.rebuilt {
                    println!(
                        "rebuilt {}: {} -> {} bytes",
                        r.name, r.bytes_before, r.bytes_after
                    );
                }
                for s in &done.skipped {
                    println!("left {} for later: {}", s.name, skip_reason(s.why));
                }
                if done.rebuilt.is_empty() && done.dropped.is_empty() && done.skipped.is_empty() {
                    println!("no bloated index");
                }
            }
        }
        Command::Workers { json } => {
            let workers = connect(db).await?.worker_list().await?;
            if json {
                let list: Vec<serde_json::Value> = workers
                    .iter()
                    .map(|w| {
                        serde_json::json!({
                            "owner": w.owner,
                            "host": w.host,
                            "pid": w.pid,
                            "rescue_after_secs": w.rescue_after.as_secs_f64(),
                            "registered_at": w.registered_at,
                            "seen_at": w.seen_at,
                            "lost": w.lost,
                        })
                    })
                    .collect();
                output::print_json(&serde_json::Value::Array(list));
            } else if workers.is_empty() {
                println!("no registered workers");
            } else {
                let mut rows = vec![
                    [
                        "host",
                        "pid",
                        "owner",
                        "registered",
                        "seen",
                        "rescue after",
                        "state",
                    ]
                    .map(String::from)
                    .to_vec(),
                ];
                for w in &workers {
                    rows.push(vec![
                        output::clean(&w.host),
                        w.pid.to_string(),
                        format!("{:016x}", w.owner),
                        output::time(&w.registered_at),
                        output::time(&w.seen_at),
                        format!("{:?}", w.rescue_after),
                        if w.lost { "lost" } else { "live" }.to_owned(),
                    ]);
                }
                output::table(&rows);
            }
        }
        Command::Extension { out_dir } => {
            let dir = match out_dir {
                Some(dir) => dir,
                None => EmbeddedPostgres::new(default_data_dir())?.extension_dir()?,
            };
            for path in extension::write_files(&dir)? {
                println!("wrote {}", path.display());
            }
            println!("now run: CREATE EXTENSION fetchq;");
        }
        Command::Serve(args) => serve::run(db, args).await?,
        Command::DevDb(cmd) => match cmd {
            DevDbCommand::Start { data_dir } => {
                let pg = EmbeddedPostgres::new(data_dir.unwrap_or_else(default_data_dir))?;
                let running = pg.start()?;
                println!(
                    "{} PostgreSQL in {}\nDATABASE_URL={}\nstop it with: fetchq dev-db stop (or {})",
                    if running.started {
                        "started"
                    } else {
                        "already running:"
                    },
                    pg.data_dir().display(),
                    running.url("postgres"),
                    pg.stop_command()
                );
            }
            DevDbCommand::Stop { data_dir } => {
                let pg = EmbeddedPostgres::new(data_dir.unwrap_or_else(default_data_dir))?;
                pg.stop()?;
                println!("stopped PostgreSQL in {}", pg.data_dir().display());
            }
        },
    }
    Ok(())
}
