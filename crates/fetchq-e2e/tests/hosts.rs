//! Workers on several hosts (issue 17): hosts made of Linux network
//! namespaces on this machine. PostgreSQL and PgBouncer (transaction pooling)
//! run in namespace `db`, two `fetchq-fault-worker` processes in each of the
//! namespaces `h1` and `h2`, each host on its own port of a bridge in `db`, so
//! that taking h1's port down cuts only h1 (its packets are dropped, as in a
//! network partition: its connections hang, they do not fail). The test
//! process reaches the database over a third port, from the root namespace.
//!
//! While the workers drain 50,000 documents (most complete; one in ten
//! reschedules once; one in 500 works 8 s, longer than the 3 s lease), the
//! test, in order:
//! 1. cuts h1's link (h1 then leads maintenance) for twice the lease, and
//!    on until h2 leads maintenance (PostgreSQL's keepalives end the cut-off
//!    leader's session), then restores it;
//! 2. SIGKILLs one worker on h2 and starts a replacement there;
//! 3. restarts PostgreSQL (`pg_ctl restart -m immediate`).
//!
//! It asserts, collecting every violation before it panics:
//! - **every document processed**: all completed, the rescheduled ones with
//!   their new payload;
//! - **none leased twice at once**: no two handler runs of one subject (with
//!   different lease tokens) overlap in time, and no lease token is handed to
//!   two runs of one subject (runs of the SIGKILLed worker end at the kill);
//! - **no completion applied twice**: a document's iterations never exceed its
//!   handler runs, and the counters count 50,000 completions and 5,000
//!   reschedules exactly;
//! - **counters equal a real count**: `metric_get_common` (after a pack)
//!   equals `metric_compute`;
//! - **the others keep working**: documents are completed while h1 is cut;
//! - **recovery by itself**: both workers of h1 run handlers again after the
//!   link is back, every worker does after the PostgreSQL restart, and the
//!   SIGKILLed worker's documents run elsewhere, and h2 takes over
//!   maintenance from the cut-off h1 before h1's link is back;
//! - **shutdown within its deadline**: each worker exits with code 0 after
//!   SIGTERM within its shutdown_timeout plus a margin.
//!
//! It prints what it measured: drain time, how long h1's workers took to
//! recover, how long after the cut h1's in-flight documents ran elsewhere, and
//! how long after the SIGKILL the killed worker's in-flight documents did.
//!
//! It needs root and `ip netns` (iproute2); without either it prints why and
//! passes, except with `FETCHQ_NETNS=1`, where it fails. Namespaces are named
//! `fqn<pid>db|h1|h2`, the addresses are 10.251.X.0/24 (X chosen so that no
//! route of this machine uses it) and only those are ever talked to; a Drop
//! guard removes processes, namespaces, links and the cluster, on success and
//! on panic (the runs files and logs are kept on panic, for a post-mortem).
//!
//! Overlaps whose older run is a handler on a cut host (it kept running after
//! its lease ran out during the cut) are reported apart: before schema 21's
//! runtime such handlers ran on until the link came back.

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fetchq_core::{Client, NewDoc};
use serde_json::json;
use sqlx::PgPool;

use common::{RunRecord, parse_runs, read_runs};

const QUEUE: &str = "hosts";
const DOCS: &str = "fetchq_data.hosts__docs";
const TOTAL: usize = 50_000;
/// Long documents pushed after the drain, for the second cut of h1.
const PROBES: usize = 8;
/// Their work: longer than the cut, so a handler that is not stopped when its
/// lease runs out on the cut host still runs when its document runs again.
const PROBE_WORK: Duration = Duration::from_secs(15);
const LEASE: Duration = Duration::from_secs(3);
/// A cut-off leader's lock is freed by the server's TCP keepalives on its
/// session (idle 5 s, then 3 probes 2 s apart: about 11 s) and taken by a
/// follower within its next try (1 s here): the limit, with a margin.
const LEADER_MOVES_WITHIN: Duration = Duration::from_secs(25);
const GRACE: Duration = Duration::from_secs(5);
/// Slack on top of a worker's shutdown_timeout before its exit counts as late.
const EXIT_MARGIN: Duration = Duration::from_secs(10);
const PG_PORT: u16 = 5432;
const BOUNCER_PORT: u16 = 6432;
const BOUNCER_PASSWORD: &str = "fetchq-hosts-secret";
/// The maintenance leader's advisory lock key, as `pg_locks` shows it.
const LEADER_CLASSID: i64 = 0x6665;
const LEADER_OBJID: i64 = 0x7463_686d;

// ------------------------------------------------------------ environment

fn now_micros() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// Prints straight to stderr (the harness captures `eprintln!` of a passing
/// test; a skip must be seen).
fn loud(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn required() -> bool {
    std::env::var("FETCHQ_NETNS").as_deref() == Ok("1")
}

/// Skips (returns false) or, with `FETCHQ_NETNS=1`, fails.
fn unavailable(why: &str) -> bool {
    assert!(!required(), "FETCHQ_NETNS=1 but {why}");
    loud(&format!(
        "\n!!!!!!!! NOTE: {why}: the multi-host test is SKIPPED (FETCHQ_NETNS=1 makes this fail) !!!!!!!!\n"
    ));
    false
}

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

/// Runs `ip` with `args`; panics with its output if it fails.
fn ip(args: &[&str]) {
    let out = sh("ip", args);
    assert!(
        out.status.success(),
        "ip {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this machine can run the test: root, `ip netns`, PostgreSQL and
/// PgBouncer binaries.
fn can_run() -> bool {
    // the real uid, the first number of the Uid line
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false);
    if !root {
        return unavailable("not running as root (network namespaces need it)");
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return unavailable(&format!(
                "`ip netns list` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => {
            return unavailable(&format!("`ip` cannot run ({e}): apt-get install iproute2"));
        }
    }
    if fetchq_core::embedded::find_bin_dir().is_err() {
        return unavailable("no PostgreSQL server binaries (initdb, pg_ctl)");
    }
    if fetchq_testing::pgbouncer::binary().is_none() {
        return unavailable("pgbouncer is not installed");
    }
    true
}

// ---------------------------------------------------------------- network

/// The namespaces and links of one run; removed on drop (after the
/// processes in them, which are declared later and so dropped first).
struct Net {
    prefix: String,
    subnet: u8,
    namespaces: Vec<String>,
    root_link: Option<String>,
}

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn addr(&self, host: u8) -> String {
        format!("10.251.{}.{host}", self.subnet)
    }

    /// The database namespace's address (the bridge's).
    fn db_addr(&self) -> String {
        self.addr(1)
    }

    /// Host `h`'s (1 or 2) address.
    fn host_addr(&self, h: u8) -> String {
        self.addr(10 + h)
    }

    /// The bridge port of host `h` in the db namespace.
    fn port(h: u8) -> String {
        format!("p{h}")
    }

    /// Builds it: a bridge in `db` with the db's address, one port per host
    /// (a veth pair: `p<h>` on the bridge, `eth0` in the host) and one for
    /// the root namespace.
    fn build() -> Self {
        let prefix = format!("fqn{}", std::process::id());
        let mut net = Self {
            prefix,
            subnet: free_subnet(),
            namespaces: Vec::new(),
            root_link: None,
        };
        let db = net.ns("db");
        for role in ["db", "h1", "h2"] {
            let ns = net.ns(role);
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &db, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &db,
            "addr",
            "add",
            &format!("{}/24", net.db_addr()),
            "dev",
            "br0",
        ]);
        ip(&["-n", &db, "link", "set", "br0", "up"]);
        for h in [1u8, 2] {
            let host = net.ns(&format!("h{h}"));
            let port = Self::port(h);
            ip(&[
                "-n", &db, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &host,
            ]);
            ip(&["-n", &db, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{}/24", net.host_addr(h)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &host, "link", "set", "eth0", "up"]);
        }
        let root = format!("{}r", net.prefix);
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "pr", "netns", &db,
        ]);
        net.root_link = Some(root.clone());
        ip(&["-n", &db, "link", "set", "pr", "master", "br0", "up"]);
        ip(&["addr", "add", &format!("{}/24", net.addr(2)), "dev", &root]);
        ip(&["link", "set", &root, "up"]);
        net
    }

    /// Takes host `h`'s port of the bridge down (`up` false) or up again.
    fn set_link(&self, h: u8, up: bool) {
        ip(&[
            "-n",
            &self.ns("db"),
            "link",
            "set",
            &Self::port(h),
            if up { "up" } else { "down" },
        ]);
    }

    /// A command run in namespace `role`.
    fn exec(&self, role: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(role)]).arg(program);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(root) = &self.root_link {
            let _ = sh("ip", &["link", "del", root]);
        }
        for ns in self.namespaces.iter().rev() {
            let _ = sh("ip", &["netns", "del", ns]);
        }
    }
}

/// A /24 in 10.251.0.0/16 that no address or route of this machine uses.
fn free_subnet() -> u8 {
    let routes =
        String::from_utf8_lossy(&sh("ip", &["-4", "route", "show", "table", "all"]).stdout)
            .into_owned()
            + &String::from_utf8_lossy(&sh("ip", &["-4", "-o", "addr"]).stdout);
    let start = (std::process::id() % 240) as u8 + 10;
    (0..240u16)
        .map(|i| ((u16::from(start) - 10 + i) % 240 + 10) as u8)
        .find(|x| !routes.contains(&format!("10.251.{x}.")))
        .expect("no free /24 in 10.251.0.0/16")
}

/// Waits until `addr:port` accepts connections from here.
fn wait_listening(addr: &str, port: u16, within: Duration, what: &str) {
    let start = Instant::now();
    let target = format!("{addr}:{port}").parse().unwrap();
    while TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_err() {
        assert!(
            start.elapsed() < within,
            "{what} did not listen on {addr}:{port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------ database services

/// A PostgreSQL cluster in the db namespace, listening on its address only;
/// stopped (immediately) and removed on drop.
struct Cluster {
    data: PathBuf,
    bin: PathBuf,
    ns: String,
}

impl Cluster {
    fn pg_ctl(&self, args: &[&str]) -> Output {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
        out
    }

    fn start(net: &Net, dir: &Path) -> Self {
        let bin = fetchq_core::embedded::find_bin_dir().unwrap();
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        let chown = sh("chown", &["-R", "postgres:postgres", dir.to_str().unwrap()]);
        assert!(chown.status.success(), "chown {}", dir.display());
        let cluster = Self {
            data,
            bin,
            ns: net.ns("db"),
        };
        let init = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(cluster.bin.join("initdb"))
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut hba = std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data.join("pg_hba.conf"))
            .unwrap();
        writeln!(hba, "host all all 10.251.{}.0/24 trust", net.subnet).unwrap();
        // fsync off: the commit still writes its WAL to the kernel before it
        // returns, so an immediate restart (no machine crash) loses nothing
        let options = format!(
            "-p {PG_PORT} -c listen_addresses={} -c unix_socket_directories='' \
             -c max_connections=200 -c fsync=off",
            net.db_addr()
        );
        let log = cluster.data.join("server.log").display().to_string();
        cluster.pg_ctl(&["-l", &log, "-w", "-t", "120", "-o", &options, "start"]);
        cluster
    }

    /// `pg_ctl restart -m immediate`: every connection drops, the server
    /// recovers from its WAL.
    fn restart(&self) {
        // -l again: without it the server would log to (and hold) our pipe
        let log = self.data.join("server.log").display().to_string();
        self.pg_ctl(&["-l", &log, "-w", "-t", "120", "-m", "immediate", "restart"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// PgBouncer in the db namespace, transaction pooling, in front of the
/// cluster; killed on drop.
struct Bouncer {
    child: Child,
}

impl Bouncer {
    fn start(net: &Net, dir: &Path) -> Self {
        let auth = dir.join("userlist.txt");
        std::fs::write(&auth, format!("\"postgres\" \"{BOUNCER_PASSWORD}\"\n")).unwrap();
        let ini = dir.join("pgbouncer.ini");
        let db = net.db_addr();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 postgres = host={db} port={PG_PORT} dbname=postgres\n\
                 \n\
                 [pgbouncer]\n\
                 listen_addr = {db}\n\
                 listen_port = {BOUNCER_PORT}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {auth}\n\
                 pool_mode = transaction\n\
                 default_pool_size = 30\n\
                 min_pool_size = 0\n\
                 reserve_pool_size = 0\n\
                 max_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 server_check_delay = 0\n\
                 server_login_retry = 1\n\
                 query_wait_timeout = 30\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n",
                auth = auth.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let bin = fetchq_testing::pgbouncer::binary().unwrap();
        let child = net
            .exec("db", &bin)
            .args(["-u", "postgres"])
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let bouncer = Self { child };
        wait_listening(&db, BOUNCER_PORT, Duration::from_secs(20), "pgbouncer");
        bouncer
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- workers

/// A fault worker on a host; SIGKILLed on drop if still running.
struct Worker {
    name: String,
    host: u8,
    child: Child,
    runs: PathBuf,
    /// Its stdout: the stats it prints when it exits.
    out: PathBuf,
    stopped: bool,
}

impl Worker {
    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scratch directory: the cluster, PgBouncer's files, the runs files and
/// the workers' logs. Removed on success; kept (printed) on panic.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            loud(&format!(
                "hosts: runs files and logs kept in {}",
                self.0.display()
            ));
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The workers and the violations found so far.
struct Fleet {
    dir: PathBuf,
    bouncer_url: String,
    direct_url: String,
    workers: Vec<Worker>,
    violations: Vec<String>,
    notes: Vec<String>,
}

impl Fleet {
    fn spawn(&mut self, net: &Net, host: u8) -> usize {
        let n = self.workers.len();
        let name = format!("w{n}@h{host}");
        let runs = self.dir.join(format!("runs-{n}.jsonl"));
        let log = std::fs::File::create(self.dir.join(format!("worker-{n}.log"))).unwrap();
        let out_path = self.dir.join(format!("worker-{n}.out"));
        let out = std::fs::File::create(&out_path).unwrap();
        let child = net
            .exec(
                &format!("h{host}"),
                Path::new(env!("CARGO_BIN_EXE_fetchq-fault-worker")),
            )
            .env(
                "DATABASE_URL",
                format!("{}?application_name=fq-{name}", self.bouncer_url),
            )
            .env("FQ_TRANSACTION_POOLING", "1")
            .env(
                "FQ_LISTEN_URL",
                format!("{}?application_name=fq-{name}-listen", self.direct_url),
            )
            .env("FQ_RUNS_FILE", &runs)
            .env("FQ_QUEUE", QUEUE)
            .env("FQ_CONCURRENCY", "16")
            .env("FQ_MAX_CONNECTIONS", "10")
            .env("FQ_LEASE_MS", LEASE.as_millis().to_string())
            .env("FQ_GRACE_MS", GRACE.as_millis().to_string())
            .env("FQ_MAINTENANCE_MS", "200")
            .env("FQ_WORK_MS", "10")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers.push(Worker {
            name,
            host,
            child,
            runs,
            out: out_path,
            stopped: false,
        });
        n
    }

    fn violation(&mut self, invariant: &str, what: impl Into<String>) {
        let what = what.into();
        loud(&format!("VIOLATION [{invariant}]: {what}"));
        self.violations.push(format!("[{invariant}] {what}"));
    }

    fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        loud(&format!("hosts: {what}"));
        self.notes.push(what);
    }

    fn runs(&self) -> Vec<RunRecord> {
        read_runs(&self.dir)
    }

    /// The runs recorded since the files had `sizes` (workers started
    /// since: all of theirs).
    fn runs_since(&self, sizes: &[u64]) -> Vec<RunRecord> {
        let texts: Vec<String> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let text = std::fs::read(&w.runs).unwrap_or_default();
                let from = sizes
                    .get(i)
                    .map_or(0, |&s| usize::try_from(s).unwrap().min(text.len()));
                String::from_utf8_lossy(&text[from..]).into_owned()
            })
            .collect();
        parse_runs(&texts)
    }

    /// How long each worker's runs file is now.
    fn sizes(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| std::fs::metadata(&w.runs).map_or(0, |m| m.len()))
            .collect()
    }

    /// Start times (µs) of the runs recorded by worker `i` in its file from
    /// byte `from` on (the file is only appended to).
    fn starts_of(&self, i: usize, from: u64) -> Vec<i64> {
        let text = std::fs::read(&self.workers[i].runs).unwrap_or_default();
        let from = usize::try_from(from).unwrap().min(text.len());
        String::from_utf8_lossy(&text[from..])
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["ev"] == "start")
            .filter_map(|v| v["t"].as_i64())
            .collect()
    }

    /// Waits until each worker of `which` started a run after `since`;
    /// returns per worker the delay from `since` (None: not within `within`).
    /// `sizes` are the files' sizes at `since` (or before).
    async fn wait_runs_after(
        &self,
        which: &[usize],
        since: i64,
        sizes: &[u64],
        within: Duration,
    ) -> Vec<Option<Duration>> {
        let start = Instant::now();
        let mut found: Vec<Option<Duration>> = vec![None; which.len()];
        while start.elapsed() < within && found.iter().any(Option::is_none) {
            for (k, &i) in which.iter().enumerate() {
                if found[k].is_none()
                    && let Some(t) = self
                        .starts_of(i, sizes[i])
                        .into_iter()
                        .filter(|t| *t > since)
                        .min()
                {
                    found[k] = Some(micros(t - since));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found
    }

    /// SIGTERM to every running worker; each must exit with 0 in time.
    async fn stop_all(&mut self) {
        for w in self.workers.iter().filter(|w| !w.stopped) {
            let _ = sh("kill", &["-TERM", &w.child.id().to_string()]);
        }
        let asked = Instant::now();
        let mut late = Vec::new();
        for w in self.workers.iter_mut().filter(|w| !w.stopped) {
            loop {
                if let Some(status) = w.child.try_wait().unwrap() {
                    w.stopped = true;
                    if status.code() != Some(0) {
                        late.push(format!("{} exited with {status} after SIGTERM", w.name));
                    }
                    break;
                }
                if asked.elapsed() > GRACE + EXIT_MARGIN {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    w.stopped = true;
                    late.push(format!(
                        "{} did not exit within {:?} after SIGTERM (killed)",
                        w.name,
                        GRACE + EXIT_MARGIN
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for l in late {
            self.violation("shutdown within its deadline", l);
        }
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us.max(0)).unwrap())
}

fn fmt_delays(d: &[Duration]) -> String {
    if d.is_empty() {
        return "none".into();
    }
    let mut d = d.to_vec();
    d.sort();
    format!(
        "{} docs: min {:.2?}, median {:.2?}, max {:.2?}",
        d.len(),
        d[0],
        d[d.len() / 2],
        d[d.len() - 1]
    )
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn completed(pool: &PgPool) -> i64 {
    // the server may be restarting: retried by the callers' loops
    sqlx::query_scalar(&format!("SELECT count(*) FROM {DOCS} WHERE status = 3"))
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

async fn wait_completed(pool: &PgPool, target: i64, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if completed(pool).await >= target {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Which host holds the maintenance leader's lock (on its direct
/// connection, so the client address is the host's).
async fn leader(pool: &PgPool, net: &Net) -> String {
    let addr: Option<String> = sqlx::query_scalar(
        "SELECT host(a.client_addr) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2",
    )
    .bind(LEADER_CLASSID)
    .bind(LEADER_OBJID)
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    match addr {
        Some(a) if a == net.host_addr(1) => "h1".into(),
        Some(a) if a == net.host_addr(2) => "h2".into(),
        Some(a) => format!("{a} (through PgBouncer)"),
        None => "none".into(),
    }
}

/// What the database shows of maintenance and stuck work: the queue's
/// maintenance job, the expired leases, the sessions in a transaction.
async fn snapshot(pool: &PgPool) -> String {
    let job: Option<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT (next_iteration - now())::text, attempts, last_error FROM fetchq.jobs
         WHERE task = 'mnt' AND queue = $1",
    )
    .bind(QUEUE)
    .fetch_optional(pool)
    .await
    .unwrap_or(None);
    let expired: Option<(i64, Option<String>)> = sqlx::query_as(&format!(
        "SELECT count(*), max(now() - next_iteration)::text FROM {DOCS}
         WHERE status = 2 AND next_iteration < now()"
    ))
    .fetch_optional(pool)
    .await
    .unwrap_or(None);
    let busy: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws(' | ', application_name, state, wait_event, (now() - xact_start)::text, left(query, 70))
             FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND xact_start < now() - interval '1 second'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    format!(
        "mnt job (due in, attempts, error) {job:?}; expired leases (count, oldest by) {expired:?}; sessions in a transaction for over 1 s {busy:?}"
    )
}

/// For each run in `victims` (subject and lease token): how long after
/// `since` the subject's next run with another token began; the subjects
/// that had none.
fn rerun_delays(
    runs: &[RunRecord],
    victims: &[(String, String)],
    since: i64,
) -> (Vec<Duration>, Vec<String>) {
    let mut delays = Vec::new();
    let mut missing = Vec::new();
    for (subject, token) in victims {
        match runs
            .iter()
            .filter(|r| &r.subject == subject && &r.token != token && r.started > since)
            .map(|r| r.started)
            .min()
        {
            Some(t) => delays.push(micros(t - since)),
            None => missing.push(subject.clone()),
        }
    }
    (delays, missing)
}

/// How long after `since` maintenance put each of `subjects` back to pending
/// as an orphan (its log row); the subjects not rescued (yet).
async fn rescue_delays(
    pool: &PgPool,
    subjects: &[String],
    since: i64,
) -> (Vec<Duration>, Vec<String>) {
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT s, (SELECT (extract(epoch FROM min(l.created_at)) * 1000000)::bigint
                    FROM fetchq_data.hosts__logs l
                    WHERE l.subject = s AND l.ref_id = 'fetchq:orphan'
                      AND l.created_at > to_timestamp($2::float8 / 1000000))
         FROM unnest($1::text[]) AS s",
    )
    .bind(subjects)
    .bind(since as f64)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let mut delays = Vec::new();
    let mut missing = Vec::new();
    for (s, t) in rows {
        match t {
            Some(t) => delays.push(micros(t - since)),
            None => missing.push(s),
        }
    }
    (delays, missing)
}

/// The runs of the workers `pids` in flight at `at` (begun before, not
/// ended): subject and token.
fn in_flight(runs: &[RunRecord], pids: &[i64], at: i64) -> Vec<(String, String)> {
    runs.iter()
        .filter(|r| pids.contains(&r.pid) && r.started < at && r.ended.is_none_or(|e| e > at))
        .map(|r| (r.subject.clone(), r.token.clone()))
        .collect()
}

/// Waits (at most 30 s) until one of the workers `pids` has a handler
/// running, so that the fault that follows hits work in flight.
async fn wait_in_flight(fleet: &Fleet, pids: &[i64]) {
    let sizes = fleet.sizes();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30)
        && in_flight(&fleet.runs_since(&sizes), pids, now_micros()).is_empty()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The documents leased now (active, with the token of a run of `pids`).
async fn leased_by(pool: &PgPool, fleet: &Fleet, pids: &[i64]) -> Vec<(String, String)> {
    let tokens: Vec<String> = fleet
        .runs()
        .into_iter()
        .filter(|r| pids.contains(&r.pid))
        .map(|r| r.token)
        .collect();
    sqlx::query_as(&format!(
        "SELECT subject::text, lease_token::text FROM {DOCS}
         WHERE status = 2 AND lease_token::text = ANY ($1)"
    ))
    .bind(&tokens)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Cuts host `h`'s link for twice the lease; returns (host, cut, restored).
async fn cut_host(net: &Net, h: u8) -> (u8, i64, i64) {
    let cut_at = now_micros();
    net.set_link(h, false);
    tokio::time::sleep(LEASE * 2).await;
    net.set_link(h, true);
    (h, cut_at, now_micros())
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_two_hosts_survive_a_cut_link_a_sigkill_and_a_postgres_restart() {
    if !can_run() {
        return;
    }
    let began = Instant::now();
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "fetchq-hosts-{}-{}",
        std::process::id(),
        now_micros()
    )));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let net = Net::build();
    let cluster = Cluster::start(&net, &scratch.0.join("cluster"));
    let bouncer = Bouncer::start(&net, &scratch.0);
    let direct_url = format!("postgres://postgres@{}:{PG_PORT}/postgres", net.db_addr());
    let bouncer_url = format!(
        "postgres://postgres:{BOUNCER_PASSWORD}@{}:{BOUNCER_PORT}/postgres",
        net.db_addr()
    );
    loud(&format!(
        "hosts: namespaces {:?}, subnet 10.251.{}.0/24, set up in {:.1?}",
        net.namespaces,
        net.subnet,
        began.elapsed()
    ));

    // the schema, the queue and the documents, from the root namespace
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&direct_url)
        .await
        .unwrap();
    let client = Client::new(pool.clone());
    client.migrate().await.unwrap();
    client.queue_create(QUEUE).await.unwrap();
    client
        .queue_set_retry_backoff(
            QUEUE,
            Duration::from_millis(100),
            Duration::from_secs(1),
            0.0,
        )
        .await
        .unwrap();
    client.queue_set_max_attempts(QUEUE, 1000).await.unwrap();
    let mut rescheduled_subjects = Vec::new();
    let docs: Vec<NewDoc> = (0..TOTAL)
        .map(|i| {
            let subject = format!("doc-{i:05}");
            let payload = if i % 10 == 3 {
                rescheduled_subjects.push(subject.clone());
                json!({"outcome": "reschedule", "reschedule_ms": 1000, "then": {}})
            } else if i % 500 == 7 {
                json!({"work_ms": 8000})
            } else {
                json!({})
            };
            NewDoc::new(subject).payload(payload)
        })
        .collect();
    for chunk in docs.chunks(5_000) {
        client.push_many(QUEUE, chunk).await.unwrap();
    }
    let probe: Vec<String> = (0..PROBES).map(|i| format!("probe-{i:02}")).collect();
    let total = (TOTAL + PROBES) as i64;

    let mut fleet = Fleet {
        dir: scratch.0.join("runs"),
        bouncer_url,
        direct_url,
        workers: Vec::new(),
        violations: Vec::new(),
        notes: Vec::new(),
    };
    std::fs::create_dir_all(&fleet.dir).unwrap();
    // h1 first, and until it leads maintenance: the cut below then cuts the
    // leader off, and h2 must take over while the cut lasts
    for host in [1u8, 1] {
        fleet.spawn(&net, host);
    }
    let leads_since = Instant::now();
    while leader(&pool, &net).await != "h1" && leads_since.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for host in [2u8, 2] {
        fleet.spawn(&net, host);
    }
    let drain_began = Instant::now();
    assert!(
        wait_completed(&pool, 2_000, Duration::from_secs(120)).await,
        "the workers did not complete 2000 documents within 120 s"
    );
    fleet.note(format!(
        "2000 completed after {:.1?}",
        drain_began.elapsed()
    ));
    // the pid a worker records is the process the test started (ip netns
    // exec execs it): the checks below rely on it
    let pids: Vec<i64> = fleet.workers.iter().map(Worker::pid).collect();
    let recorded: std::collections::HashSet<i64> = fleet.runs().iter().map(|r| r.pid).collect();
    for (w, pid) in fleet.workers.iter().zip(&pids) {
        assert!(
            recorded.contains(pid),
            "{} (pid {pid}) recorded no run under its pid: recorded pids {recorded:?}",
            w.name
        );
    }
    let h1: Vec<usize> = vec![0, 1];
    let h1_pids: Vec<i64> = h1.iter().map(|&i| pids[i]).collect();
    // the windows in which a host was cut off: (host, cut, restored)
    let mut cuts: Vec<(u8, i64, i64)> = Vec::new();

    // 1. cut h1 for twice the lease
    wait_in_flight(&fleet, &h1_pids).await;
    let leader_at_cut = leader(&pool, &net).await;
    let done_before_cut = completed(&pool).await;
    let sizes = fleet.sizes();
    let cut_at = now_micros();
    net.set_link(1, false);
    // what h1 holds: its documents leased at the cut
    let cut_in_flight = leased_by(&pool, &fleet, &h1_pids).await;
    tokio::time::sleep((LEASE * 2).saturating_sub(micros(now_micros() - cut_at))).await;
    // a cut-off leader: PostgreSQL's keepalives on its session (set by the
    // leader) end that session and its lock, and h2 leads while h1 is still cut
    let mut leader_moved = None;
    if leader_at_cut == "h1" {
        while micros(now_micros() - cut_at) < LEADER_MOVES_WITHIN {
            if leader(&pool, &net).await == "h2" {
                leader_moved = Some(micros(now_micros() - cut_at));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    net.set_link(1, true);
    let restored_at = now_micros();
    match (leader_at_cut.as_str(), leader_moved) {
        ("h1", Some(d)) => fleet.note(format!(
            "h1 led maintenance at the cut; h2 led {d:.1?} after the cut, h1 still cut"
        )),
        ("h1", None) => fleet.violation(
            "recovery by itself",
            format!(
                "h1 led maintenance at the cut and still held the lock {LEADER_MOVES_WITHIN:?} later"
            ),
        ),
        (other, _) => fleet.violation(
            "recovery by itself",
            format!("h1 did not lead maintenance at the cut (leader: {other}): the cut-off leader case did not run"),
        ),
    }
    cuts.push((1, cut_at, restored_at));
    let done_during_cut = completed(&pool).await;
    fleet.note(format!(
        "h1 cut for {:.1?} (leader then: {leader_at_cut}); {} documents completed meanwhile (by h2)",
        micros(restored_at - cut_at),
        done_during_cut - done_before_cut
    ));
    if done_during_cut <= done_before_cut {
        fleet.violation(
            "the others keep working",
            format!("no document completed while h1 was cut (completed {done_before_cut} before, {done_during_cut} after)"),
        );
    }
    let recovered = fleet
        .wait_runs_after(&h1, restored_at, &sizes, Duration::from_secs(60))
        .await;
    for (&i, r) in h1.iter().zip(&recovered) {
        let name = fleet.workers[i].name.clone();
        match r {
            Some(d) => fleet.note(format!(
                "{name} ran a handler again {d:.2?} after its link was back"
            )),
            None => fleet.violation(
                "recovery by itself",
                format!("{name} ran no handler within 60 s after its link was back"),
            ),
        }
    }
    let cut_subjects: Vec<String> = cut_in_flight.iter().map(|r| r.0.clone()).collect();
    let (rescued, _) = rescue_delays(&pool, &cut_subjects, cut_at).await;
    fleet.note(format!(
        "h1 held {} leased documents at the cut; put back to pending by maintenance after the cut: {}",
        cut_in_flight.len(),
        fmt_delays(&rescued)
    ));

    // 2. SIGKILL a worker of h2, start a replacement there
    let victim = 3usize;
    let victim_name = fleet.workers[victim].name.clone();
    wait_in_flight(&fleet, &[pids[victim]]).await;
    let leader_at_kill = leader(&pool, &net).await;
    let kill_out = sh("kill", &["-KILL", &pids[victim].to_string()]);
    assert!(kill_out.status.success());
    let killed_at = now_micros();
    let _ = fleet.workers[victim].child.wait();
    fleet.workers[victim].stopped = true;
    // its leases: still active (maintenance waits for them to expire)
    let victim_in_flight = leased_by(&pool, &fleet, &[pids[victim]]).await;
    fleet.spawn(&net, 2);
    let victim_subjects: Vec<String> = victim_in_flight.iter().map(|r| r.0.clone()).collect();
    if victim_in_flight.is_empty() {
        fleet.violation(
            "recovery by itself",
            format!("{victim_name} held no lease when killed: the kill tested nothing"),
        );
    }
    let wait_from = Instant::now();
    let (rescued, missing) = loop {
        let (d, m) = rescue_delays(&pool, &victim_subjects, killed_at).await;
        if m.is_empty() || wait_from.elapsed() > LEASE * 10 {
            break (d, m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    fleet.note(format!(
        "SIGKILL {victim_name} (leader then: {leader_at_kill}) holding {} leased documents; \
         put back to pending by maintenance after the SIGKILL: {}",
        victim_in_flight.len(),
        fmt_delays(&rescued)
    ));
    if !missing.is_empty() {
        fleet.violation(
            "recovery by itself",
            format!(
                "{} documents leased by {victim_name} at its SIGKILL were not rescued within {:?} (10 leases): {:?}",
                missing.len(),
                LEASE * 10,
                &missing[..missing.len().min(5)]
            ),
        );
    }

    // 3. restart PostgreSQL
    let leader_at_restart = leader(&pool, &net).await;
    let restart_began = Instant::now();
    let sizes = fleet.sizes();
    cluster.restart();
    let restarted_at = now_micros();
    fleet.note(format!(
        "PostgreSQL restarted (-m immediate) in {:.1?} (leader before: {leader_at_restart})",
        restart_began.elapsed()
    ));
    let alive: Vec<usize> = (0..fleet.workers.len()).filter(|&i| i != victim).collect();
    let back = fleet
        .wait_runs_after(&alive, restarted_at, &sizes, Duration::from_secs(60))
        .await;
    for (&i, r) in alive.iter().zip(&back) {
        let name = fleet.workers[i].name.clone();
        match r {
            Some(d) => fleet.note(format!("{name} ran a handler {d:.2?} after the restart")),
            None => fleet.violation(
                "recovery by itself",
                format!("{name} ran no handler within 60 s after the PostgreSQL restart"),
            ),
        }
    }

    // drain
    if !wait_completed(&pool, TOTAL as i64, Duration::from_secs(300)).await {
        let done = completed(&pool).await;
        fleet.violation(
            "every document processed",
            format!(
                "only {done} of {TOTAL} documents completed within 300 s of the restart; {}",
                snapshot(&pool).await
            ),
        );
    }
    fleet.note(format!(
        "{TOTAL} documents drained in {:.1?}",
        drain_began.elapsed()
    ));
    let runs = fleet.runs();
    let (ran, missing) = rerun_delays(&runs, &cut_in_flight, cut_at);
    fleet.note(format!(
        "h1's documents leased at the cut ran again (another lease) after the cut: {} ({} did not: h1 completed them)",
        fmt_delays(&ran),
        missing.len()
    ));
    let (ran, missing) = rerun_delays(&runs, &victim_in_flight, killed_at);
    fleet.note(format!(
        "{victim_name}'s documents leased at the SIGKILL ran elsewhere after the SIGKILL: {} \
         (a rescued orphan keeps its expired lease time as due time, so it waits behind the older backlog)",
        fmt_delays(&ran)
    ));
    if !missing.is_empty() {
        fleet.violation(
            "recovery by itself",
            format!(
                "{} documents leased by {victim_name} at its SIGKILL never ran elsewhere: {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ),
        );
    }

    // 4. the stale-handler probe: long handlers on one host, cut while they
    // run, on an otherwise empty queue (so that rescued documents run again
    // at once). The cut host is the one without the maintenance leader (a
    // cut leader rescues nothing until its link is back); the other host's
    // workers are stopped (SIGSTOP) while the probes are pushed and picked,
    // so that the cut host has them.
    let leader_at_probe = leader(&pool, &net).await;
    let target: u8 = if leader_at_probe == "h1" { 2 } else { 1 };
    let (on_target, others): (Vec<usize>, Vec<usize>) = alive
        .iter()
        .partition(|&&i| fleet.workers[i].host == target);
    let target_pids: Vec<i64> = on_target.iter().map(|&i| fleet.workers[i].pid()).collect();
    for &i in &others {
        let _ = sh("kill", &["-STOP", &fleet.workers[i].child.id().to_string()]);
    }
    let sizes = fleet.sizes();
    push_probes(&client, &probe).await;
    let probe_from = Instant::now();
    let probe_running = loop {
        let n = in_flight(&fleet.runs_since(&sizes), &target_pids, now_micros())
            .iter()
            .filter(|r| r.0.starts_with("probe-"))
            .count();
        if n >= PROBES || probe_from.elapsed() > Duration::from_secs(30) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for &i in &others {
        let _ = sh("kill", &["-CONT", &fleet.workers[i].child.id().to_string()]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, cut2_at, restored2_at) = cut_host(&net, target).await;
    cuts.push((target, cut2_at, restored2_at));
    fleet.note(format!(
        "probe: {probe_running} long handlers ({PROBE_WORK:?} of work) running on h{target} (leader: {leader_at_probe}) when its link was cut for {:.1?}",
        micros(restored2_at - cut2_at)
    ));
    if probe_running == 0 {
        fleet.violation(
            "recovery by itself",
            format!("probe: no probe handler ran on h{target} within 30 s: the second cut tested nothing"),
        );
    }
    if !wait_completed(&pool, total, Duration::from_secs(120)).await {
        let done = completed(&pool).await;
        fleet.violation(
            "every document processed",
            format!("only {done} of {total} documents (probes included) completed within 120 s of the second cut"),
        );
    }
    let probe_runs = fleet.runs();
    let probe_in_flight: Vec<(String, String)> = in_flight(&probe_runs, &target_pids, cut2_at)
        .into_iter()
        .filter(|r| r.0.starts_with("probe-"))
        .collect();
    let probe_subjects: Vec<String> = probe_in_flight.iter().map(|r| r.0.clone()).collect();
    let (rescued, _) = rescue_delays(&pool, &probe_subjects, cut2_at).await;
    let (ran, _) = rerun_delays(&probe_runs, &probe_in_flight, cut2_at);
    let ended: Vec<Duration> = probe_runs
        .iter()
        .filter(|r| {
            probe_in_flight
                .iter()
                .any(|p| p.0 == r.subject && p.1 == r.token)
        })
        .filter_map(|r| r.ended.map(|e| micros(e - cut2_at)))
        .collect();
    fleet.note(format!(
        "probe: after the second cut, h{target}'s long handlers were put back to pending: {}; ran again elsewhere: {}; ended on h{target}: {}",
        fmt_delays(&rescued),
        fmt_delays(&ran),
        fmt_delays(&ended)
    ));

    fleet.stop_all().await;
    for w in &fleet.workers {
        let out = std::fs::read_to_string(&w.out).unwrap_or_default();
        loud(&format!("hosts: {} stats {}", w.name, out.trim()));
    }

    // ------------------------------------------------------------ checks
    let mut runs = fleet.runs();
    let worker_of: HashMap<i64, (String, u8)> = fleet
        .workers
        .iter()
        .map(|w| (w.pid(), (w.name.clone(), w.host)))
        .collect();
    for r in &mut runs {
        if r.pid == pids[victim] && r.ended.is_none() {
            // the process died at the kill: so did its handlers
            r.ended = Some(killed_at);
        }
    }
    fleet.note(format!("{} handler runs recorded", runs.len()));
    let unended = runs.iter().filter(|r| r.ended.is_none()).count();
    if unended > 0 && !fleet.violations.iter().any(|v| v.starts_with("[shutdown")) {
        fleet.violation(
            "shutdown within its deadline",
            format!("{unended} handler runs never ended although every worker exited cleanly"),
        );
    }
    check_overlaps(&mut fleet, &runs, &worker_of, &cuts);

    // every document processed
    let summary: Vec<(i32, i64)> = sqlx::query_as(&format!(
        "SELECT status, count(*) FROM {DOCS} GROUP BY status ORDER BY status"
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    fleet.note(format!("final statuses (status, count): {summary:?}"));
    let done = completed(&pool).await;
    if done != total {
        fleet.violation(
            "every document processed",
            format!("{done} of {total} documents completed"),
        );
    }
    let not_rescheduled = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM {DOCS} WHERE subject LIKE 'doc-%' AND right(subject, 1) = '3'
             AND (payload IS DISTINCT FROM '{{}}'::jsonb OR iterations < 2)"
        ),
    )
    .await;
    if not_rescheduled > 0 {
        fleet.violation(
            "every document processed",
            format!("{not_rescheduled} of the documents to reschedule once do not have their new payload or were not iterated twice"),
        );
    }

    // no completion applied twice
    let mut runs_per: HashMap<&str, i64> = HashMap::new();
    for r in &runs {
        *runs_per.entry(r.subject.as_str()).or_default() += 1;
    }
    let iterations: Vec<(String, i64)> =
        sqlx::query_as(&format!("SELECT subject::text, iterations FROM {DOCS}"))
            .fetch_all(&pool)
            .await
            .unwrap();
    let twice: Vec<&(String, i64)> = iterations
        .iter()
        .filter(|(s, it)| *it > runs_per.get(s.as_str()).copied().unwrap_or(0))
        .collect();
    if !twice.is_empty() {
        fleet.violation(
            "no completion applied twice",
            format!(
                "{} documents resolved more often than handled (subject, iterations), e.g. {:?}",
                twice.len(),
                &twice[..twice.len().min(5)]
            ),
        );
    }

    // counters equal a real count
    client.metric_log_pack().await.unwrap();
    let counters = client.metric_get_common(QUEUE).await.unwrap();
    let real = client.metric_compute(QUEUE).await.unwrap();
    fleet.note(format!(
        "counters: picked {}, completed {}, rescheduled {}, rejected {}, orphans {}",
        counters.picked,
        counters.completed,
        counters.rescheduled,
        counters.rejected,
        counters.orphans
    ));
    if counters.status_counts() != real {
        fleet.violation(
            "counters equal a real count",
            format!(
                "metric_get_common {:?} != metric_compute {real:?}",
                counters.status_counts()
            ),
        );
    }
    if counters.completed != total {
        fleet.violation(
            "no completion applied twice",
            format!(
                "the completed counter is {} for {total} documents",
                counters.completed
            ),
        );
    }
    let rescheduled = rescheduled_subjects.len() as i64;
    if counters.rescheduled != rescheduled {
        fleet.violation(
            "no completion applied twice",
            format!(
                "the rescheduled counter is {} for {rescheduled} documents rescheduled once",
                counters.rescheduled
            ),
        );
    }
    pool.close().await;
    drop(bouncer);
    drop(cluster);
    loud(&format!("hosts: whole test {:.1?}", began.elapsed()));
    assert!(
        fleet.violations.is_empty(),
        "{} invariant violation(s):\n  {}\nmeasured:\n  {}",
        fleet.violations.len(),
        fleet.violations.join("\n  "),
        fleet.notes.join("\n  ")
    );
}

async fn push_probes(client: &Client, probe: &[String]) {
    let docs: Vec<NewDoc> = probe
        .iter()
        .map(|s| {
            NewDoc::new(s.clone())
                .payload(json!({"work_ms": u64::try_from(PROBE_WORK.as_millis()).unwrap()}))
        })
        .collect();
    client.push_many(QUEUE, &docs).await.unwrap();
}

/// None leased twice at once: no two runs of one subject with different
/// tokens overlap in time, no token is handed to two runs of one subject.
/// Overlaps whose older run was on a cut host, begun before its cut ended,
/// still running at the cut and overlapping a run begun after the cut began,
/// are the stale handlers of the cut host: reported apart.
fn check_overlaps(
    fleet: &mut Fleet,
    runs: &[RunRecord],
    worker_of: &HashMap<i64, (String, u8)>,
    cuts: &[(u8, i64, i64)],
) {
    let mut by_subject: HashMap<&str, Vec<&RunRecord>> = HashMap::new();
    for r in runs {
        by_subject.entry(r.subject.as_str()).or_default().push(r);
    }
    let mut overlaps = Vec::new();
    let mut stale = Vec::new();
    let mut stale_longest = 0i64;
    let mut reused = 0usize;
    let t0 = cuts.first().map_or(0, |c| c.1);
    for list in by_subject.values_mut() {
        list.sort_by_key(|r| r.started);
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if a.token == b.token {
                    reused += 1;
                    continue;
                }
                let a_end = a.ended.unwrap_or(i64::MAX);
                if b.started >= a_end {
                    continue;
                }
                let overlap_ms = (a_end.min(b.ended.unwrap_or(i64::MAX)) - b.started) / 1000;
                let describe = |r: &RunRecord| {
                    format!(
                        "{} {}..{} ms{}",
                        worker_of.get(&r.pid).map_or("?", |w| w.0.as_str()),
                        (r.started - t0) / 1000,
                        r.ended
                            .map_or("never".into(), |e| ((e - t0) / 1000).to_string()),
                        if r.cancelled {
                            " (saw its cancellation)"
                        } else {
                            ""
                        }
                    )
                };
                let what = format!(
                    "{}: {} overlaps {} by {overlap_ms} ms (times from the first cut)",
                    a.subject,
                    describe(a),
                    describe(b)
                );
                let host = worker_of.get(&a.pid).map_or(0, |w| w.1);
                let in_cut = cuts.iter().any(|&(h, cut, back)| {
                    h == host && a.started < back && b.started > cut && a_end > cut
                });
                if in_cut {
                    stale_longest = stale_longest.max(overlap_ms);
                    stale.push(what);
                } else {
                    overlaps.push(what);
                }
            }
        }
    }
    if !stale.is_empty() {
        let what = format!(
            "{} handler runs on a cut host kept running after their lease ran out and overlapped the run that re-leased them (longest overlap {stale_longest} ms), e.g. {:?}",
            stale.len(),
            &stale[..stale.len().min(3)]
        );
        fleet.violation("none leased twice at once", what);
    }
    if !overlaps.is_empty() {
        fleet.violation(
            "none leased twice at once",
            format!(
                "{} pairs of handler runs of one subject overlapped, e.g. {:?}",
                overlaps.len(),
                &overlaps[..overlaps.len().min(3)]
            ),
        );
    }
    if reused > 0 {
        fleet.violation(
            "none leased twice at once",
            format!("{reused} leases (subject and token) were handed to more than one handler run"),
        );
    }
}
