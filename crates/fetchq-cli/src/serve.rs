//! `fetchq serve`: the REST API.

use std::io::Write;
use std::time::Duration;

use fetchq_core::Client;
use fetchq_core::embedded::{EmbeddedPostgres, default_data_dir};
use fetchq_server::{Config, Tokens};
use sqlx::postgres::PgPoolOptions;

use crate::BoxError;

/// Flags of `fetchq serve`.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: String,
    /// Install or upgrade the schema before serving (always done on the private
    /// PostgreSQL used when no database URL is given).
    #[arg(long)]
    migrate: bool,
    /// Tokens, one `SCOPES=SECRET` a line (scopes: read, push, work, admin joined with +).
    #[arg(long, value_name = "FILE")]
    tokens_file: Option<std::path::PathBuf>,
    /// Tokens as comma-separated `SCOPES=SECRET` entries, e.g. `admin=s3cr3t,push+work=worker-7`.
    #[arg(long, env = "FETCHQ_TOKENS", hide_env_values = true)]
    tokens: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    body_limit: usize,
    /// Longest a request may take, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Database connections at most.
    #[arg(long, default_value_t = 16)]
    max_connections: u32,
    /// Serve `GET /metrics` (Prometheus) without a token; otherwise it needs a `read` token.
    #[arg(long)]
    metrics_public: bool,
}

/// Serving was refused for a reason the user must fix (exit code 2).
#[derive(Debug)]
pub(crate) struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub(crate) async fn run(db: crate::Db<'_>, args: ServeArgs) -> Result<(), BoxError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let mut spec = args.tokens.clone().unwrap_or_default();
    if let Some(file) = &args.tokens_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Refused(format!("cannot read {}: {e}", file.display())))?;
        spec.push('\n');
        spec.push_str(&text);
    }
    let configured = Tokens::parse(&spec).map_err(|e| Refused(format!("bad tokens: {e}")))?;

    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let addr = listener.local_addr()?;
    let (tokens, generated) = if configured.is_empty() {
        if !addr.ip().is_loopback() {
            return Err(Box::new(Refused(format!(
                "refusing to serve on {addr} without tokens: anyone who can reach it could run the queues.\n\
                 Configure tokens with FETCHQ_TOKENS=\"admin=<secret>,push+work=<secret>,read=<secret>\" \
                 or --tokens-file FILE (one SCOPES=SECRET a line), or bind to 127.0.0.1 to get a \
                 generated admin token."
            ))));
        }
        let (tokens, secret) = Tokens::generate_admin();
        (tokens, Some(secret))
    } else {
        if configured.shortest_secret().is_some_and(|n| n < 16) {
            eprintln!(
                "fetchq serve: warning: a token secret is shorter than 16 characters; \
                 use long random secrets (e.g. `openssl rand -hex 32`)"
            );
        }
        (configured, None)
    };

    // no database named: the private development PostgreSQL (.fetchq/pg, or
    // $FETCHQ_PGDATA), started if needed, with the schema installed
    let (url, migrate) = match db.url {
        Some(url) => (url.to_owned(), args.migrate),
        None => {
            let server = EmbeddedPostgres::new(default_data_dir())?;
            let running = server.start()?;
            println!(
                "no DATABASE_URL: {} the private PostgreSQL in {} (stop it with `fetchq dev-db stop`)",
                if running.started { "started" } else { "using" },
                server.data_dir().display()
            );
            (running.url("postgres"), true)
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(args.max_connections)
        .acquire_timeout(fetchq_core::CONNECT_ACQUIRE_TIMEOUT)
        .connect_lazy(&url)?;
    let client = Client::new(pool).transaction_pooling(db.transaction_pooling);
    if migrate {
        let report = client.migrate().await?;
        println!("fetchq schema at version {}", report.to_version);
    }

    println!("fetchq serve: listening on http://{addr} (web console at /, API at /api/v1)");
    if let Some(secret) = &generated {
        println!(
            "no token configured: generated an admin token for this run\n  \
             token:   {secret}\n  console: http://{addr}/?token={secret}\n  \
             api:     curl -H \"Authorization: Bearer {secret}\" http://{addr}/api/v1/queues"
        );
    }
    let config = Config {
        body_limit: args.body_limit,
        request_timeout: args.request_timeout,
        tokens,
        metrics_public: args.metrics_public,
    };
    fetchq_server::serve(listener, client, config, shutdown_signal()).await?;
    // stdout may be a closed pipe by now: never panic on the last words
    let _ = writeln!(std::io::stdout(), "fetchq serve: stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("fetchq serve: shutting down, finishing requests in flight");
}
