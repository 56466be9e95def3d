//! A private PostgreSQL started from the binaries installed on the machine, for
//! demos, local development and tests: no database URL needed.
//!
//! The server keeps its data in one directory, listens on 127.0.0.1 only, trusts
//! local connections, and is reused by the next [`EmbeddedPostgres::start`] on the
//! same directory. PostgreSQL refuses to run as root, so when the current user is
//! root the data directory is handed to the `postgres` user and every server
//! command runs through `runuser -u postgres --`.

use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why the private server could not be started or stopped.
///
/// ```no_run
/// use fetchq_core::embedded::{EmbeddedError, EmbeddedPostgres};
///
/// match EmbeddedPostgres::new(".fetchq/pg") {
///     Err(EmbeddedError::BinariesNotFound) => eprintln!("install PostgreSQL or set DATABASE_URL"),
///     Err(other) => eprintln!("{other}"),
///     Ok(pg) => { pg.start()?; }
/// }
/// # Ok::<(), EmbeddedError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// No `initdb`/`pg_ctl` found.
    #[error(
        "no PostgreSQL server binaries found (looked for pg_ctl in $FETCHQ_PG_BIN, on PATH and in \
         /usr/lib/postgresql/*/bin): install PostgreSQL 15 or newer (Debian/Ubuntu: \
         `apt-get install postgresql`), or set DATABASE_URL to use an existing server"
    )]
    BinariesNotFound,
    /// Running as root but there is no `postgres` user to run the server as.
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `postgres` user to run it as: create one or set DATABASE_URL"
    )]
    NoPostgresUser,
    /// The data directory cannot be used by the server's user.
    #[error(
        "the data directory {dir} is not usable by the `postgres` user (is a parent directory private?): set FETCHQ_PGDATA to another place"
    )]
    DataDirNotAccessible {
        /// The directory.
        dir: PathBuf,
    },
    /// A server command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// An I/O error around the data directory.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, EmbeddedError>;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let context = context.into();
    move |source| EmbeddedError::Io { context, source }
}

/// A private PostgreSQL server living in one data directory.
///
/// # Examples
///
/// ```no_run
/// use fetchq_core::embedded::EmbeddedPostgres;
///
/// let pg = EmbeddedPostgres::new(".fetchq/pg")?;
/// let running = pg.start()?;
/// println!("PostgreSQL at {} (stop it with: {})", running.url("postgres"), pg.stop_command());
/// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    run_as_postgres: bool,
    settings: Vec<(String, String)>,
}

/// A started server: where to reach it.
///
/// ```no_run
/// let pg = fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?;
/// let running = pg.start()?;
/// println!("port {} ({})", running.port, if running.started { "started" } else { "reused" });
/// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// Whether this call started it (false: it was already running and is reused).
    pub started: bool,
}

impl Running {
    /// Connection URL of database `database` as the `postgres` superuser.
    ///
    /// ```
    /// let r = fetchq_core::embedded::Running { port: 5433, started: true };
    /// assert_eq!(r.url("app"), "postgres://postgres@127.0.0.1:5433/app");
    /// ```
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl EmbeddedPostgres {
    /// A server whose data lives in `data_dir` (created on first start).
    ///
    /// # Errors
    ///
    /// [`EmbeddedError::BinariesNotFound`] when no PostgreSQL binaries are installed.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new("/var/tmp/app-pg")?;
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let data_dir = absolute(data_dir.into())?;
        Ok(Self {
            data_dir,
            bin_dir: find_bin_dir()?,
            run_as_postgres: running_as_root(),
            settings: Vec::new(),
        })
    }

    /// Adds a server setting (`-c name=value`) applied at every start.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?.setting("shared_buffers", "256MB");
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The data directory.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?;
    /// assert!(pg.data_dir().is_absolute());
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding `pg_ctl`, `initdb` and `pg_config`.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?;
    /// assert!(pg.bin_dir().join("pg_ctl").exists());
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A shell command that stops this server.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?;
    /// println!("stop it with: {}", pg.stop_command());
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn stop_command(&self) -> String {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let prefix = if self.run_as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D {} stop -m fast",
            pg_ctl.display(),
            self.data_dir.display()
        )
    }

    /// Creates the cluster if needed and starts it unless it already runs.
    /// Concurrent callers on the same directory (threads or processes) are
    /// serialized with a lock file, so exactly one of them starts the server.
    ///
    /// # Errors
    ///
    /// When the directory cannot be prepared or a server command fails; the
    /// error carries the command's output.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?;
    /// let url = pg.start()?.url("postgres");
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn start(&self) -> Result<Running> {
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
        let lock_path = self.data_dir.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        lock.lock().map_err(io_err("locking the data directory"))?;
        let result = self.start_locked();
        drop(lock);
        result
    }

    fn start_locked(&self) -> Result<Running> {
        if !self.data_dir.join("PG_VERSION").exists() {
            self.init_cluster()?;
        }
        if let Some(port) = self.running_port() {
            return Ok(Running {
                port,
                started: false,
            });
        }
        let port = match self.remembered_port() {
            Some(port) => port,
            None => free_port()?,
        };
        let log = self.data_dir.join("server.log");
        let mut options =
            format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''");
        for (name, value) in &self.settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let data = self.data_dir.display().to_string();
        let log = log.display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "120", "-o", &options, "start",
            ],
        )?;
        // the next start (after a stop or a reboot) comes back on the same port
        let _ = fs::write(self.port_file(), port.to_string());
        Ok(Running {
            port,
            started: true,
        })
    }

    fn port_file(&self) -> PathBuf {
        self.data_dir.with_extension("port")
    }

    /// The port of the previous start, if it is free now.
    fn remembered_port(&self) -> Option<u16> {
        let port: u16 = fs::read_to_string(self.port_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        TcpListener::bind(("127.0.0.1", port)).ok().map(|_| port)
    }

    /// Stops the server if it runs (fast shutdown).
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails.
    ///
    /// ```no_run
    /// fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?.stop()?;
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn stop(&self) -> Result<()> {
        if self.running_port().is_some() {
            let data = self.data_dir.display().to_string();
            self.pg("pg_ctl", &["-D", &data, "-w", "-m", "fast", "stop"])?;
        }
        Ok(())
    }

    /// Stops the server if it runs, the way a crash would (`pg_ctl stop -m
    /// immediate`): no checkpoint, nothing flushed; the next start runs crash
    /// recovery. For tests of durability.
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new("/tmp/crash-test-pg")?;
    /// pg.start()?;
    /// pg.stop_immediate()?;
    /// pg.start()?; // recovers from the WAL
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn stop_immediate(&self) -> Result<()> {
        if self.running_port().is_some() {
            let data = self.data_dir.display().to_string();
            self.pg("pg_ctl", &["-D", &data, "-w", "-m", "immediate", "stop"])?;
        }
        Ok(())
    }

    /// The server's `share/extension` directory (from `pg_config --sharedir`).
    ///
    /// # Errors
    ///
    /// When `pg_config` fails.
    ///
    /// ```no_run
    /// let pg = fetchq_core::embedded::EmbeddedPostgres::new(".fetchq/pg")?;
    /// fetchq_core::extension::write_files(pg.extension_dir()?).expect("writable extension dir");
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn extension_dir(&self) -> Result<PathBuf> {
        let out = run(Command::new(self.bin_dir.join("pg_config")).arg("--sharedir"))?;
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("extension"))
    }

    /// The port of the server running on this directory, if any.
    fn running_port(&self) -> Option<u16> {
        let pid_file = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let data = self.data_dir.display().to_string();
        self.pg("pg_ctl", &["-D", &data, "status"]).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn init_cluster(&self) -> Result<()> {
        fs::create_dir_all(&self.data_dir)
            .map_err(io_err(format!("creating {}", self.data_dir.display())))?;
        set_private(&self.data_dir)?;
        if self.run_as_postgres {
            let ids = run(Command::new("id").args(["-u", "postgres"]))
                .and_then(|u| Ok((u, run(Command::new("id").args(["-g", "postgres"]))?)))
                .map_err(|_| EmbeddedError::NoPostgresUser)?;
            let uid = parse_id(&ids.0)?;
            let gid = parse_id(&ids.1)?;
            std::os::unix::fs::chown(&self.data_dir, Some(uid), Some(gid))
                .map_err(io_err("handing the data directory to the postgres user"))?;
            let check = Command::new("runuser")
                .args(["-u", "postgres", "--", "test", "-w"])
                .arg(&self.data_dir)
                .status();
            if !matches!(check, Ok(s) if s.success()) {
                return Err(EmbeddedError::DataDirNotAccessible {
                    dir: self.data_dir.clone(),
                });
            }
        }
        let data = self.data_dir.display().to_string();
        self.pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        Ok(())
    }

    /// Runs a server binary, as the `postgres` user when we are root.
    fn pg(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let program = self.bin_dir.join(tool);
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .current_dir(self.data_dir.parent().unwrap_or(Path::new("/")));
        keep_inherited_fds_from_children();
        run(&mut cmd)
    }
}

/// Marks every descriptor above stderr close-on-exec, so the server that
/// `pg_ctl` leaves running does not keep them open.
///
/// Rust opens its own files close-on-exec, but descriptors inherited from the
/// caller are not: a wrapper such as `flock 9 cargo run ...` passes its lock on
/// descriptor 9, and a server started from here would hold that lock until it
/// stops. The descriptors stay open in this process; only children no longer
/// inherit them.
fn keep_inherited_fds_from_children() {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let Ok(entries) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if fd > 2 {
            // a descriptor closed meanwhile (the listing's own) fails: harmless
            let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
    }
}

fn run(cmd: &mut Command) -> Result<Output> {
    let printable = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| EmbeddedError::Command {
        command: printable.clone(),
        output: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(EmbeddedError::Command {
            command: printable,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned(),
        })
    }
}

fn parse_id(out: &Output) -> Result<u32> {
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| EmbeddedError::NoPostgresUser)
}

fn absolute(path: PathBuf) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    let cwd = std::env::current_dir().map_err(io_err("reading the current directory"))?;
    Ok(cwd.join(path))
}

fn set_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("setting permissions of {}", dir.display())))
}

/// Whether the current process runs as root (then the server runs as `postgres`).
///
/// ```
/// let root = fetchq_core::embedded::running_as_root();
/// # let _ = root;
/// ```
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Finds the directory of `pg_ctl`/`initdb`: `$FETCHQ_PG_BIN`, then `PATH`, then
/// the newest `/usr/lib/postgresql/<version>/bin`.
///
/// # Errors
///
/// [`EmbeddedError::BinariesNotFound`] when none has both tools.
///
/// ```no_run
/// let bin = fetchq_core::embedded::find_bin_dir()?;
/// println!("using {}", bin.display());
/// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
/// ```
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("FETCHQ_PG_BIN").map(PathBuf::from) {
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(EmbeddedError::BinariesNotFound)
        };
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // a PATH entry may hold symlinks into the real bin directory
            let real = fs::canonicalize(dir.join("pg_ctl"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf));
            candidates.extend(real);
        }
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versions.into_iter().map(|(_, p)| p));
    }
    candidates
        .into_iter()
        .find(|d| has_tools(d))
        .ok_or(EmbeddedError::BinariesNotFound)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("finding a free port"))?
        .port();
    Ok(port)
}

/// The data directory of the default private server: `$FETCHQ_PGDATA`, else
/// `.fetchq/pg` under the current directory. When running as root and the
/// `postgres` user cannot reach the current directory (say, under `/root`), a
/// per-directory place under `/var/tmp/fetchq` is used instead.
///
/// ```
/// let dir = fetchq_core::embedded::default_data_dir();
/// assert!(dir.ends_with("pg"));
/// ```
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FETCHQ_PGDATA") {
        return PathBuf::from(dir);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if running_as_root() {
        let reachable = Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-x"])
            .arg(&cwd)
            .status()
            .is_ok_and(|s| s.success());
        if !reachable {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            cwd.hash(&mut h);
            return PathBuf::from(format!("/var/tmp/fetchq/{:016x}/pg", h.finish()));
        }
    }
    cwd.join(".fetchq").join("pg")
}

/// Where the default database is.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let db = fetchq_core::embedded::DefaultDatabase::resolve()?;
/// let client = fetchq_core::Client::connect(db.url()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub enum DefaultDatabase {
    /// `DATABASE_URL` was set.
    Url(String),
    /// The private server in [`default_data_dir`], started or reused.
    Embedded {
        /// Connection URL of its `postgres` database.
        url: String,
        /// The server, e.g. for [`EmbeddedPostgres::stop_command`].
        server: EmbeddedPostgres,
        /// Whether this call started it.
        started: bool,
    },
}

impl DefaultDatabase {
    /// `DATABASE_URL` when set, else the default private server (started if
    /// needed, reused otherwise).
    ///
    /// # Errors
    ///
    /// When no binaries are installed or the server cannot start; the message
    /// says how to install PostgreSQL or set `DATABASE_URL`.
    ///
    /// ```no_run
    /// use fetchq_core::embedded::DefaultDatabase;
    ///
    /// let db = DefaultDatabase::resolve()?;
    /// println!("{}", db.describe());
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn resolve() -> Result<Self> {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
        {
            return Ok(DefaultDatabase::Url(url));
        }
        let server = EmbeddedPostgres::new(default_data_dir())?;
        let running = server.start()?;
        Ok(DefaultDatabase::Embedded {
            url: running.url("postgres"),
            server,
            started: running.started,
        })
    }

    /// The connection URL.
    ///
    /// ```no_run
    /// let db = fetchq_core::embedded::DefaultDatabase::resolve()?;
    /// assert!(db.url().starts_with("postgres"));
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn url(&self) -> &str {
        match self {
            DefaultDatabase::Url(url) | DefaultDatabase::Embedded { url, .. } => url,
        }
    }

    /// A human sentence: where the database is, and how to stop it.
    ///
    /// ```no_run
    /// println!("{}", fetchq_core::embedded::DefaultDatabase::resolve()?.describe());
    /// # Ok::<(), fetchq_core::embedded::EmbeddedError>(())
    /// ```
    pub fn describe(&self) -> String {
        match self {
            DefaultDatabase::Url(_) => "using DATABASE_URL".to_owned(),
            DefaultDatabase::Embedded {
                url,
                server,
                started,
            } => format!(
                "{} private PostgreSQL at {url}\n  data: {}\n  stop it with: {}",
                if *started { "started" } else { "reusing" },
                server.data_dir().display(),
                server.stop_command()
            ),
        }
    }
}
