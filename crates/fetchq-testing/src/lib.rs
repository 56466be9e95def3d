//! Test harness for fetchq: every test gets its own fresh, migrated database on
//! a real PostgreSQL.
//!
//! The server is `DATABASE_URL` when set (the role needs `CREATEDB`); otherwise a
//! private cluster is started from the installed binaries in the system temp
//! directory and shared by every test process of the run (it is reused by later
//! runs; `fetchq dev-db stop --test-cluster` or the printed command stops it). A
//! template database with the current migrations is built once, and each
//! [`TestDb`] is a copy of it, dropped when the `TestDb` is dropped.
#![warn(missing_docs, missing_debug_implementations)]

use std::path::PathBuf;

pub mod pgbouncer;
use std::sync::OnceLock;

use fetchq_core::embedded::EmbeddedPostgres;
use fetchq_core::{Client, MIGRATIONS};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// Where the shared test cluster lives when `DATABASE_URL` is not set.
pub fn test_cluster_dir() -> PathBuf {
    std::env::temp_dir().join("fetchq-test-cluster").join("pg")
}

/// The private test cluster (not started by this call).
///
/// # Panics
///
/// When no PostgreSQL binaries are installed, with instructions.
pub fn test_cluster() -> EmbeddedPostgres {
    match EmbeddedPostgres::new(test_cluster_dir()) {
        Ok(pg) => pg
            .setting("fsync", "off")
            .setting("synchronous_commit", "off")
            .setting("full_page_writes", "off")
            .setting("max_connections", "400")
            .setting("shared_buffers", "128MB"),
        Err(e) => panic!("fetchq tests need PostgreSQL: {e}"),
    }
}

/// URL of the server's maintenance database (`postgres`), starting the private
/// cluster if needed. The same for every call in the process.
///
/// # Panics
///
/// When the server cannot be started.
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        let pg = test_cluster();
        match pg.start() {
            Ok(running) => {
                if running.started {
                    eprintln!(
                        "fetchq-testing: started PostgreSQL in {} on port {} (stop: {})",
                        pg.data_dir().display(),
                        running.port,
                        pg.stop_command()
                    );
                }
                running.url("postgres")
            }
            Err(e) => panic!("fetchq tests could not start PostgreSQL: {e}"),
        }
    })
}

fn options(url: &str, database: &str) -> PgConnectOptions {
    let opts: PgConnectOptions = url
        .parse()
        .unwrap_or_else(|e| panic!("invalid database URL {url:?}: {e}"));
    opts.database(database).disable_statement_logging()
}

/// A short fingerprint of the shipped migrations, naming the template database.
fn migrations_fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for m in MIGRATIONS {
        hasher.update(m.checksum().as_bytes());
    }
    hasher.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates (once per server and migration set) the migrated template database.
async fn template(admin: &mut PgConnection, url: &str) -> String {
    let name = format!("fetchq_tpl_{}", migrations_fingerprint());
    // serialize template creation across test processes
    sqlx::query("SELECT pg_advisory_lock(7420001)")
        .execute(&mut *admin)
        .await
        .expect("advisory lock");
    let ready: Option<bool> =
        sqlx::query_scalar("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&mut *admin)
            .await
            .expect("query pg_database");
    if ready != Some(true) {
        if ready.is_some() {
            // a previous run died half-way
            sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .execute(&mut *admin)
                .await
                .expect("drop stale template");
        }
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut *admin)
            .await
            .expect("create template database");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options(url, &name))
            .await
            .expect("connect to template");
        fetchq_core::migrate(&pool).await.expect("migrate template");
        pool.close().await;
        sqlx::raw_sql(&format!("ALTER DATABASE \"{name}\" IS_TEMPLATE true"))
            .execute(&mut *admin)
            .await
            .expect("mark template");
    }
    sqlx::query("SELECT pg_advisory_unlock(7420001)")
        .execute(&mut *admin)
        .await
        .expect("advisory unlock");
    name
}

/// A fresh database with the fetchq schema installed, dropped on drop.
#[derive(Debug)]
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// A pool on it.
    pub pool: PgPool,
    /// A client over that pool.
    pub client: Client,
    server: String,
}

impl TestDb {
    /// A new database with a pool of 10 connections.
    ///
    /// # Panics
    ///
    /// On any setup failure (this is test code).
    pub async fn new() -> Self {
        Self::with_pool_size(10).await
    }

    /// A new database with a pool of `max_connections`.
    ///
    /// # Panics
    ///
    /// On any setup failure.
    pub async fn with_pool_size(max_connections: u32) -> Self {
        let server = server_url().to_owned();
        let mut admin = PgConnection::connect_with(&options(&server, "postgres"))
            .await
            .expect("connect to the test server");
        let template = template(&mut admin, &server).await;
        let name = format!("fetchq_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .execute(&mut admin)
        .await
        .expect("create test database");
        let _ = admin.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options(&server, &name))
            .await
            .expect("connect to test database");
        Self {
            name,
            client: Client::new(pool.clone()),
            pool,
            server,
        }
    }

    /// Updates every row of `table` `rounds` times on one connection (three
    /// rounds of a 3,000-row queue leave 9,000 dead rows), then makes that
    /// connection publish its statistics, so that `pg_stat_user_tables`
    /// shows the dead rows soon after (not when the session ends). The
    /// table must have a `priority` column, as every documents table has.
    ///
    /// # Panics
    ///
    /// When a statement fails (a test helper).
    ///
    /// ```no_run
    /// # async fn run(db: fetchq_testing::TestDb) {
    /// db.churn("fetchq_data.churn__docs", 3).await;
    /// # }
    /// ```
    #[allow(clippy::unwrap_used)] // a test helper fails by panicking
    pub async fn churn(&self, table: &str, rounds: usize) {
        let mut conn = self.pool.acquire().await.unwrap();
        for _ in 0..rounds {
            sqlx::raw_sql(&format!("UPDATE {table} SET priority = priority + 1"))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        publish_stats(&mut conn).await;
    }

    /// Creates `queue` and leaves it with a sparse primary key, as a queue of
    /// growing subjects with completed documents deleted has: `docs`
    /// documents pushed in subject order (`page/00000001`, ...), all but one
    /// in 16 deleted, then `VACUUM ANALYZE` (statistics for the bloat
    /// estimate). Returns the documents kept.
    ///
    /// # Panics
    ///
    /// When a statement fails (a test helper).
    ///
    /// ```no_run
    /// # async fn run(db: fetchq_testing::TestDb) {
    /// assert_eq!(db.sparse_queue("mailer", 40_000).await, 2_500);
    /// # }
    /// ```
    #[allow(clippy::unwrap_used)] // a test helper fails by panicking
    pub async fn sparse_queue(&self, queue: &str, docs: usize) -> i64 {
        self.client.queue_create(queue).await.unwrap();
        // one connection, its statistics published before the VACUUM: else
        // the inserts' and the DELETE's counts could land after the VACUUM
        // set them, and the bloat estimate would count rows long gone
        let mut conn = self.pool.acquire().await.unwrap();
        let subjects: Vec<usize> = (1..=docs).collect();
        for chunk in subjects.chunks(1000) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|i| {
                    fetchq_core::NewDoc::new(format!("https://example.com/page/{i:08}")).at(
                        fetchq_core::Schedule::after(std::time::Duration::from_secs(3600)),
                    )
                })
                .collect();
            self.client
                .push_many_with(&mut *conn, queue, &batch)
                .await
                .unwrap();
        }
        let table = format!("fetchq_data.{queue}__docs");
        sqlx::raw_sql(&format!(
            "DELETE FROM {table} WHERE right(subject, 8)::int % 16 <> 0"
        ))
        .execute(&mut *conn)
        .await
        .unwrap();
        publish_stats(&mut conn).await;
        sqlx::raw_sql(&format!("VACUUM ANALYZE {table}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The URL of this database (for child processes).
    pub fn url(&self) -> String {
        options(&self.server, &self.name).to_url_lossy().to_string()
    }

    /// A fresh, empty database on the same server without the fetchq schema
    /// (for install tests); dropped with this `TestDb`'s server cleanup only if
    /// the caller drops it. Returns its name.
    pub async fn create_empty_database(&self) -> String {
        let mut admin = PgConnection::connect_with(&options(&self.server, "postgres"))
            .await
            .expect("connect to the test server");
        let name = format!("fetchq_empty_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
            .execute(&mut admin)
            .await
            .expect("create empty database");
        name
    }

    /// A pool on another database of the same server.
    pub async fn pool_on(&self, database: &str, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options(&self.server, database))
            .await
            .expect("connect")
    }

    /// A fresh database on the same server at schema `version`: the
    /// migrations up to it applied and recorded, as an older release left it
    /// (for upgrade tests). Returns a pool of 4 connections on it.
    pub async fn database_at(&self, version: i32) -> PgPool {
        let name = self.create_empty_database().await;
        let pool = self.pool_on(&name, 4).await;
        sqlx::raw_sql(
            "CREATE SCHEMA fetchq; CREATE TABLE fetchq.migrations (version integer PRIMARY KEY, \
             name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .execute(&pool)
        .await
        .expect("create the migrations table");
        for m in fetchq_core::MIGRATIONS
            .iter()
            .filter(|m| m.version <= version)
        {
            sqlx::raw_sql(m.sql)
                .execute(&pool)
                .await
                .expect("apply a migration");
            sqlx::query(
                "INSERT INTO fetchq.migrations (version, name, checksum) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .execute(&pool)
            .await
            .expect("record a migration");
        }
        pool
    }

    /// Drops a database of the same server (forcing connections out).
    pub async fn drop_database(&self, database: &str) {
        drop_database(&self.server, database).await;
    }
}

async fn drop_database(server: &str, name: &str) {
    if let Ok(mut admin) = PgConnection::connect_with(&options(server, "postgres")).await {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "fetchq-testing: keeping database {} of the failed test",
                self.name
            );
            return;
        }
        let server = self.server.clone();
        let name = self.name.clone();
        // the test's runtime may be shutting down: use a private one
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&server, &name));
            }
        })
        .join();
    }
}

/// Makes a session publish its table statistics now (they are otherwise
/// sent when it has been idle a while): `pg_stat_user_tables` then counts
/// its writes, and a VACUUM after it is not overtaken by them.
#[allow(clippy::unwrap_used)] // a test helper fails by panicking
async fn publish_stats(conn: &mut PgConnection) {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
}

/// Creates `queue` (max_attempts 1) and leaves documents in every status:
/// pushes `docs` documents (versions 0 and 1, every fifth planned an hour
/// ahead), picks a third of them per version and, in turn, completes, kills,
/// drops, rejects (dead at once), reschedules a minute ahead or leaves active.
/// Counter writes are left unpacked. For tests that compare counters with a
/// real count.
///
/// # Panics
///
/// On any engine error: it is test set-up.
#[allow(clippy::unwrap_used)]
pub async fn mixed_workload(client: &Client, queue: &str, docs: i32) {
    use fetchq_core::{NewDoc, PickOptions, Schedule};
    use std::time::Duration;

    client.queue_create(queue).await.unwrap();
    client.queue_set_max_attempts(queue, 1).await.unwrap();
    let new: Vec<NewDoc> = (0..docs)
        .map(|i| {
            let d = NewDoc::new(format!("d{i}")).version(i % 2);
            if i % 5 == 0 {
                d.at(Duration::from_secs(3600))
            } else {
                d
            }
        })
        .collect();
    client.push_many(queue, &new).await.unwrap();
    for version in 0..2 {
        let picked = client
            .pick(queue, &PickOptions::new().version(version).limit(docs / 3))
            .await
            .unwrap();
        for (i, doc) in picked.iter().enumerate() {
            let l = &doc.lease;
            match i % 6 {
                0 => client.complete(l, None).await.unwrap(),
                1 => client.kill(l, None).await.unwrap(),
                2 => client.drop_doc(l).await.unwrap(),
                3 => client.reject(l, "nope", None, None).await.unwrap(),
                4 => client
                    .reschedule(l, Schedule::after(Duration::from_secs(60)), None)
                    .await
                    .unwrap(),
                _ => {} // stays active
            }
        }
    }
}

/// Runs `promtool check metrics` (at `promtool`, or found on `PATH`) on a
/// Prometheus exposition and panics, naming `what`, on any complaint (some
/// versions print lint problems with exit code 0). Returns false, with a
/// note, when promtool is missing; under `CI=true` that fails instead.
///
/// ```no_run
/// let text = "# HELP up Up.\n# TYPE up gauge\nup 1\n";
/// fetchq_testing::promtool_check_metrics(None, "an example", text);
/// ```
pub fn promtool_check_metrics(promtool: Option<&std::path::Path>, what: &str, text: &str) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = promtool.map_or_else(
        || std::path::PathBuf::from("promtool"),
        std::path::Path::to_path_buf,
    );
    let Ok(mut child) = Command::new(&program)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing on CI (apt-get install prometheus)"
        );
        eprintln!("NOTE: promtool not found (apt-get install prometheus): promtool check skipped");
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {what}: {said}\n{text}"
    );
    true
}
