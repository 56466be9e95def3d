//! A private PgBouncer in front of a [`TestDb`](crate::TestDb): started from
//! the installed binary on a free port, with a generated ini and auth file,
//! run as the `postgres` user when the tests run as root (PgBouncer refuses
//! to run as root, like PostgreSQL). Killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// PgBouncer's pooling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's whole session.
    Session,
    /// A server connection per transaction (an autocommit statement is one).
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// The user and password clients log in to PgBouncer with.
pub const BOUNCER_USER: &str = "postgres";
const BOUNCER_PASSWORD: &str = "fetchq-bouncer-secret";

/// The PgBouncer binary: `FETCHQ_PGBOUNCER`, else `pgbouncer` on `PATH`,
/// else `/usr/sbin/pgbouncer` (Debian's place, not on a user's `PATH`).
///
/// Returns `None` when there is none; under `CI=true` that panics instead
/// (CI installs it: `apt-get install pgbouncer`), otherwise it prints a loud
/// note, and the caller skips.
///
/// ```no_run
/// if let Some(bin) = fetchq_testing::pgbouncer::binary() {
///     println!("using {}", bin.display());
/// }
/// ```
pub fn binary() -> Option<PathBuf> {
    let found = std::env::var_os("FETCHQ_PGBOUNCER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("pgbouncer"))
                    .find(|p| p.is_file())
            })
        })
        .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pgbouncer is missing on CI (apt-get install pgbouncer)"
        );
        // straight to stderr: the test harness captures eprintln! of a
        // passing test, and a skip must be seen
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! NOTE: pgbouncer not found (apt-get install pgbouncer, or set FETCHQ_PGBOUNCER): \
             the PgBouncer test is SKIPPED !!!!!!!!\n"
        );
    }
    found
}

/// Settings of a [`PgBouncer`].
#[derive(Debug, Clone)]
pub struct BouncerOptions {
    /// Pooling mode (default transaction).
    pub mode: PoolMode,
    /// Server connections per user and database (`default_pool_size`, default 2,
    /// so client connections really share them).
    pub pool_size: u32,
    /// Client connections at most (`max_client_conn`, default 200).
    pub max_client_conn: u32,
}

impl Default for BouncerOptions {
    fn default() -> Self {
        Self {
            mode: PoolMode::Transaction,
            pool_size: 2,
            max_client_conn: 200,
        }
    }
}

/// A running private PgBouncer for one database.
#[derive(Debug)]
pub struct PgBouncer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    database: String,
    child: Option<Child>,
}

/// The ini a test PgBouncer runs with: `database` of the server at
/// `server_port`, served on `port`.
///
/// ```
/// let ini = fetchq_testing::pgbouncer::ini(
///     &fetchq_testing::pgbouncer::BouncerOptions::default(), "app", 5432, 6432, std::path::Path::new("/tmp/users.txt"));
/// assert!(ini.contains("pool_mode = transaction"));
/// ```
pub fn ini(
    opts: &BouncerOptions,
    database: &str,
    server_port: u16,
    port: u16,
    auth_file: &Path,
) -> String {
    format!(
        "[databases]\n\
         {database} = host=127.0.0.1 port={server_port} dbname={database}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {auth}\n\
         pool_mode = {mode}\n\
         default_pool_size = {pool}\n\
         min_pool_size = 0\n\
         reserve_pool_size = 0\n\
         max_client_conn = {max_client}\n\
         ignore_startup_parameters = extra_float_digits\n\
         server_check_delay = 0\n\
         server_login_retry = 1\n\
         query_wait_timeout = 30\n\
         log_connections = 0\n\
         log_disconnections = 0\n",
        mode = opts.mode.as_str(),
        pool = opts.pool_size,
        max_client = opts.max_client_conn,
        auth = auth_file.display(),
    )
}

impl PgBouncer {
    /// Starts a PgBouncer for the database at `server_url` (a
    /// `postgres://user@127.0.0.1:port/db` URL of the test server). `None`
    /// when PgBouncer is not installed (see [`binary`]).
    ///
    /// # Panics
    ///
    /// When it cannot be started (this is test code).
    pub fn start(server_url: &str, opts: &BouncerOptions) -> Option<Self> {
        let bin = binary()?;
        Some(Self::start_with(bin, server_url, opts).unwrap_or_else(|e| panic!("{e}")))
    }

    /// As [`start`](Self::start), with the binary at `bin`, failing with a
    /// message instead of panicking (for the benchmarks).
    ///
    /// # Errors
    ///
    /// When the URL is not a database URL, or PgBouncer cannot be started.
    pub fn start_with(
        bin: PathBuf,
        server_url: &str,
        opts: &BouncerOptions,
    ) -> Result<Self, String> {
        let (server_port, database) = parse_server_url(server_url)?;
        let dir = std::env::temp_dir()
            .join("fetchq-pgbouncer")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
        std::fs::create_dir_all(&dir).map_err(io("create the PgBouncer directory"))?;
        let auth_file = dir.join("userlist.txt");
        std::fs::write(
            &auth_file,
            format!("\"{BOUNCER_USER}\" \"{BOUNCER_PASSWORD}\"\n"),
        )
        .map_err(io("write the auth file"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(io("find a free port"))?;
        std::fs::write(
            dir.join("pgbouncer.ini"),
            ini(opts, &database, server_port, port, &auth_file),
        )
        .map_err(io("write the ini"))?;
        let mut bouncer = Self {
            bin,
            dir,
            port,
            database,
            child: None,
        };
        bouncer.spawn()?;
        Ok(bouncer)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pgbouncer.log"))
            .map_err(io("open the PgBouncer log"))?;
        let mut cmd = Command::new(&self.bin);
        if is_root() {
            // it refuses to run as root; -u drops to that user
            cmd.args(["-u", "postgres"]);
        }
        cmd.arg(self.dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("open the PgBouncer log"))?)
            .stderr(log);
        let child = cmd.spawn().map_err(io("start pgbouncer"))?;
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                return Err(format!("pgbouncer exited ({status}):\n{}", self.log()));
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "pgbouncer did not listen on {} within 10 s:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Its URL: the database through PgBouncer, with the password.
    pub fn url(&self) -> String {
        format!(
            "postgres://{BOUNCER_USER}:{BOUNCER_PASSWORD}@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Kills it (SIGKILL: every client and server connection drops at once).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it again on the same port.
    ///
    /// # Panics
    ///
    /// When it does not start again.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "fetchq-testing: PgBouncer log kept in {}",
                self.dir.display()
            );
        }
    }
}

fn parse_server_url(url: &str) -> Result<(u16, String), String> {
    let opts: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| format!("invalid database URL {url:?}: {e}"))?;
    let database = opts
        .get_database()
        .ok_or_else(|| format!("no database in {url:?}"))?
        .to_owned();
    Ok((opts.get_port(), database))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
