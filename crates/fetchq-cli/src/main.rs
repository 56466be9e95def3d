//! `fetchq`: install the schema, inspect queues, run maintenance, build the
//! PostgreSQL extension, and manage a private development server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod serve;
use fetchq_core::embedded::{EmbeddedPostgres, default_data_dir};
use fetchq_core::{Client, NewDoc, extension};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install or upgrade the fetchq schema (idempotent, safe to run concurrently).
    Init,
    /// Print the engine and schema versions.
    Info,
    /// Manage queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Push a document (a duplicate subject is ignored).
    Push {
        /// Queue name.
        queue: String,
        /// Unique subject.
        subject: String,
        /// JSON payload.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Document version.
        #[arg(long, default_value_t = 0)]
        version: i32,
        /// Priority (higher first).
        #[arg(long, default_value_t = 0)]
        priority: i32,
    },
    /// Print a queue's counters (packing pending writes first).
    Metrics {
        /// Queue name.
        queue: String,
    },
    /// Run every queue's maintenance once (orphans, retention, snapshots, counters).
    Mnt,
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
    List,
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
            if e.downcast_ref::<serve::Refused>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn connect(url: Option<&str>) -> Result<Client, BoxError> {
    let url = url.ok_or(
        "no database: pass --database-url or set DATABASE_URL (for a local one: `fetchq dev-db start`)",
    )?;
    Ok(Client::connect(url).await?)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let url = cli.database_url.as_deref().filter(|u| !u.is_empty());
    match cli.command {
        Command::Init => {
            let report = connect(url).await?.migrate().await?;
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
        Command::Info => {
            let info = connect(url).await?.info().await?;
            println!("fetchq {} (schema {})", info.version, info.schema_version);
        }
        Command::Queue(cmd) => {
            let client = connect(url).await?;
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
                QueueCommand::List => {
                    for q in client.queue_list().await? {
                        println!(
                            "{}\t{}\tversion {}\tmax_attempts {}",
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
            }
        }
        Command::Push {
            queue,
            subject,
            payload,
            version,
            priority,
        } => {
            let payload: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| format!("--payload is not valid JSON: {e}"))?;
            let doc = NewDoc::new(subject.as_str())
                .payload(payload)
                .version(version)
                .priority(priority);
            let added = connect(url).await?.push(&queue, &doc).await?;
            println!(
                "{subject}: {}",
                if added {
                    "queued"
                } else {
                    "duplicate, ignored"
                }
            );
        }
        Command::Metrics { queue } => {
            let client = connect(url).await?;
            client.metric_log_pack().await?;
            let c = client.metric_get_common(&queue).await?;
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
        Command::Mnt => {
            let (jobs, packed) = connect(url).await?.mnt().await?;
            println!("ran {jobs} maintenance jobs, packed {packed} metric writes");
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
        Command::Serve(args) => serve::run(url, args).await?,
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
