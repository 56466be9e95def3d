//! Installing and upgrading the SQL engine: ordered, versioned, checksummed
//! migrations embedded at build time.

use sha2::{Digest, Sha256};
use sqlx::{Executor, PgConnection, PgPool, Row};

use crate::error::{Error, Result};

/// One step of the schema, applied once and recorded in `fetchq.migrations`.
///
/// ```
/// for m in fetchq_core::MIGRATIONS {
///     println!("{} {} {}", m.version, m.name, &m.checksum()[..8]);
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version number; migrations apply in increasing order.
    pub version: i32,
    /// Short name, from the file name.
    pub name: &'static str,
    /// The SQL text.
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../sql/migrations/", $file)),
        }
    };
}

/// Creates `fetchq.migrations`, the record of applied migrations.
pub(crate) const BOOTSTRAP: &str = include_str!("../sql/bootstrap.sql");

/// Every migration this build ships, in order.
///
/// ```
/// let versions: Vec<i32> = fetchq_core::MIGRATIONS.iter().map(|m| m.version).collect();
/// assert!(versions.windows(2).all(|w| w[1] == w[0] + 1));
/// ```
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "schema", "0001_schema.sql"),
    migration!(2, "queues", "0002_queues.sql"),
    migration!(3, "docs", "0003_docs.sql"),
    migration!(4, "pick", "0004_pick.sql"),
    migration!(5, "logs_metrics", "0005_logs_metrics.sql"),
    migration!(6, "maintenance", "0006_maintenance.sql"),
    migration!(7, "worker", "0007_worker.sql"),
    migration!(8, "notify_once", "0008_notify_once.sql"),
    migration!(9, "pending_hint", "0009_pending_hint.sql"),
    migration!(10, "faults", "0010_faults.sql"),
    migration!(11, "v4_compat", "0011_v4_compat.sql"),
    migration!(12, "admin", "0012_admin.sql"),
    migration!(13, "metrics_read", "0013_metrics_read.sql"),
    migration!(14, "console", "0014_console.sql"),
    migration!(15, "timers", "0015_timers.sql"),
    migration!(16, "rate_limits", "0016_rate_limits.sql"),
    migration!(17, "key_concurrency", "0017_key_concurrency.sql"),
    migration!(18, "schedules", "0018_schedules.sql"),
    migration!(19, "key_walk", "0019_key_walk.sql"),
    migration!(20, "retention", "0020_retention.sql"),
    migration!(21, "workers", "0021_workers.sql"),
];

/// Key of the advisory lock that serializes concurrent migrations.
const LOCK_KEY: i64 = 0x6665_7463_6871; // "fetchq"

impl Migration {
    /// Hex SHA-256 of the migration text (line endings normalized), recorded
    /// when applied and compared on every later run.
    ///
    /// ```
    /// let m = &fetchq_core::MIGRATIONS[0];
    /// assert_eq!(m.checksum().len(), 64);
    /// ```
    pub fn checksum(&self) -> String {
        let normalized = self.sql.replace("\r\n", "\n");
        let digest = Sha256::digest(normalized.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The highest schema version this build ships.
///
/// ```
/// assert_eq!(fetchq_core::latest_schema_version(), fetchq_core::MIGRATIONS.len() as i32);
/// ```
pub fn latest_schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What [`migrate`] did.
///
/// ```no_run
/// # async fn run(client: fetchq_core::Client) -> fetchq_core::Result<()> {
/// let report: fetchq_core::MigrationReport = client.migrate().await?;
/// println!("applied {:?}", report.applied);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Schema version before the run (0 on an empty database).
    pub from_version: i32,
    /// Schema version after the run.
    pub to_version: i32,
    /// Versions applied by this run (empty when already up to date).
    pub applied: Vec<i32>,
}

/// Installs or upgrades the fetchq schema in the database behind `pool`.
///
/// Idempotent, and safe when many processes start at once: the whole run holds
/// an advisory lock in one transaction, so exactly one process applies each
/// migration and the others then find it done. It refuses to touch a database
/// whose schema is newer than this build ([`Error::SchemaTooNew`]) or whose
/// applied migrations differ from the shipped ones ([`Error::MigrationChanged`]).
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> fetchq_core::Result<()> {
/// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// let report = fetchq_core::migrate(&pool).await?;
/// println!("fetchq schema {} -> {}", report.from_version, report.to_version);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Database errors, [`Error::SchemaTooNew`] and [`Error::MigrationChanged`].
pub async fn migrate(pool: &PgPool) -> Result<MigrationReport> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .persistent(false)
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    // quiet the "already exists, skipping" notices of the bootstrap
    sqlx::query("SET LOCAL client_min_messages = warning")
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    run_script(&mut tx, BOOTSTRAP).await?;
    let rows = sqlx::query("SELECT version, checksum FROM fetchq.migrations ORDER BY version")
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
    let mut applied_before = Vec::with_capacity(rows.len());
    for row in rows {
        applied_before.push((row.try_get::<i32, _>(0)?, row.try_get::<String, _>(1)?));
    }
    let from_version = applied_before.last().map_or(0, |(v, _)| *v);
    if from_version > latest_schema_version() {
        return Err(Error::SchemaTooNew {
            found: from_version,
            supported: latest_schema_version(),
        });
    }
    for (version, checksum) in &applied_before {
        if let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version)
            && &m.checksum() != checksum
        {
            return Err(Error::MigrationChanged {
                version: m.version,
                name: m.name.to_owned(),
            });
        }
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > from_version) {
        tracing::info!(
            version = m.version,
            name = m.name,
            "applying fetchq migration"
        );
        run_script(&mut tx, m.sql).await?;
        sqlx::query("INSERT INTO fetchq.migrations (version, name, checksum) VALUES ($1, $2, $3)")
            .persistent(false)
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .execute(&mut *tx)
            .await?;
        applied.push(m.version);
    }
    tx.commit().await?;
    Ok(MigrationReport {
        from_version,
        to_version: from_version.max(latest_schema_version()),
        applied,
    })
}

/// Runs a multi-statement script (simple query protocol).
async fn run_script(conn: &mut PgConnection, script: &str) -> Result<()> {
    conn.execute(script).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_named_and_not_empty() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "migration {} out of order", m.name);
            assert!(m.sql.contains("CREATE"), "migration {} looks empty", m.name);
            assert!(
                !m.sql.contains("BEGIN;") && !m.sql.contains("COMMIT;"),
                "migration {} must not control transactions: the runner and CREATE EXTENSION do",
                m.name
            );
        }
    }

    #[test]
    fn checksums_ignore_line_endings_only() {
        let a = Migration {
            version: 1,
            name: "a",
            sql: "SELECT 1;\nSELECT 2;\n",
        };
        let b = Migration {
            version: 1,
            name: "a",
            sql: "SELECT 1;\r\nSELECT 2;\r\n",
        };
        let c = Migration {
            version: 1,
            name: "a",
            sql: "SELECT 1;\nSELECT 3;\n",
        };
        assert_eq!(a.checksum(), b.checksum());
        assert_ne!(a.checksum(), c.checksum());
        assert_eq!(a.checksum().len(), 64);
    }
}
