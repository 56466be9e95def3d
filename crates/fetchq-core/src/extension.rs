//! The SQL engine packaged as a PostgreSQL extension (`CREATE EXTENSION fetchq`),
//! generated from the same migration files that [`migrate`](crate::migrate) applies.

use std::path::{Path, PathBuf};

use crate::migrate::{BOOTSTRAP, MIGRATIONS, Migration, latest_schema_version};

/// The extension version for a schema version: `5.<schema>.0`, the same string
/// `fetchq.info()` reports.
///
/// ```
/// assert_eq!(fetchq_core::extension::version_for(6), "5.6.0");
/// ```
pub fn version_for(schema_version: i32) -> String {
    format!("5.{schema_version}.0")
}

/// The content of `fetchq.control`.
///
/// ```
/// assert!(fetchq_core::extension::control_file().contains("default_version"));
/// ```
pub fn control_file() -> String {
    format!(
        "# fetchq: Postgres-backed stateful job queue (generated, do not edit)\n\
         comment = 'fetchq: unique, repetitive, exclusive documents queue'\n\
         default_version = '{}'\n\
         relocatable = false\n\
         superuser = true\n",
        version_for(latest_schema_version())
    )
}

fn record(m: &Migration) -> String {
    format!(
        "INSERT INTO fetchq.migrations (version, name, checksum) VALUES ({}, '{}', '{}');\n",
        m.version,
        m.name,
        m.checksum()
    )
}

/// The install script `fetchq--<version>.sql`: every migration, the record of
/// them in `fetchq.migrations` (so [`migrate`](crate::migrate) sees the schema as
/// current), and the tables whose rows `pg_dump` must keep.
///
/// ```
/// let script = fetchq_core::extension::install_script();
/// assert!(script.contains("CREATE FUNCTION fetchq.doc_pick"));
/// ```
pub fn install_script() -> String {
    let mut out =
        String::from("\\echo Use \"CREATE EXTENSION fetchq\" to load this file. \\quit\n");
    out.push_str(BOOTSTRAP);
    for m in MIGRATIONS {
        out.push_str(&format!("\n-- migration {} {}\n", m.version, m.name));
        out.push_str(m.sql);
        out.push_str(&record(m));
    }
    out.push_str(&config_dump(latest_schema_version()));
    out
}

/// What `pg_dump` keeps of the extension's tables. It dumps the rows of a
/// registered table (and the value of a registered sequence) and `pg_restore`
/// inserts them after `CREATE EXTENSION` ran this script again, so a row the
/// script inserts itself must be filtered out, or the restore fails on a
/// duplicate key and loses the table's other rows: `fetchq.migrations` is
/// entirely the script's, and so is the global `lgp` job; every other job
/// (each queue's `mnt`, `sts`, `drp`) is data. The id sequences are registered
/// so restored ids do not collide with new ones. Registering again only updates
/// the filter, so every upgrade script carries it too (an install of an older
/// version gets the fix with `ALTER EXTENSION fetchq UPDATE`).
const CONFIG_DUMP: &str = "
-- what pg_dump keeps: every row this script does not insert itself, and the id sequences
SELECT pg_catalog.pg_extension_config_dump('fetchq.queues', '');
SELECT pg_catalog.pg_extension_config_dump('fetchq.queues_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('fetchq.metrics', '');
SELECT pg_catalog.pg_extension_config_dump('fetchq.metrics_writes', '');
SELECT pg_catalog.pg_extension_config_dump('fetchq.metrics_writes_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('fetchq.jobs', 'WHERE NOT (task = ''lgp'' AND queue = ''*'')');
SELECT pg_catalog.pg_extension_config_dump('fetchq.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('fetchq.migrations', 'WHERE false');
";

/// Tables registered from a later schema on, with the schema that creates
/// them: an upgrade script to an older schema must not name them. The rate
/// slots (schema 16) and the schedules (schema 18) are configuration like the
/// queues, every row kept; so are the worker registrations (schema 21).
const CONFIG_DUMP_SINCE: &[(i32, &str)] = &[
    (
        16,
        "SELECT pg_catalog.pg_extension_config_dump('fetchq.rate_slots', '');\n",
    ),
    (
        18,
        "SELECT pg_catalog.pg_extension_config_dump('fetchq.schedules', '');\n",
    ),
    // the registrations, kept so that a restored database still knows whose
    // leases its active documents carry
    (
        21,
        "SELECT pg_catalog.pg_extension_config_dump('fetchq.workers', '');\n",
    ),
];

/// [`CONFIG_DUMP`] and the registrations of the tables schema `version` has.
fn config_dump(version: i32) -> String {
    let mut out = String::from(CONFIG_DUMP);
    for (since, line) in CONFIG_DUMP_SINCE {
        if *since <= version {
            out.push_str(line);
        }
    }
    out
}

/// The upgrade script from schema `from` to `from + 1`
/// (`fetchq--<from>--<from+1>.sql`), or `None` past the latest version.
///
/// ```
/// assert!(fetchq_core::extension::upgrade_script(1).is_some());
/// assert!(fetchq_core::extension::upgrade_script(fetchq_core::latest_schema_version()).is_none());
/// ```
pub fn upgrade_script(from: i32) -> Option<String> {
    let m = MIGRATIONS.iter().find(|m| m.version == from + 1)?;
    Some(format!(
        "\\echo Use \"ALTER EXTENSION fetchq UPDATE\" to load this file. \\quit\n{}\n{}{}",
        m.sql,
        record(m),
        config_dump(m.version)
    ))
}

/// Writes `fetchq.control`, the install script and every upgrade script into
/// `dir` (for example the server's `$(pg_config --sharedir)/extension`), and
/// returns the paths written.
///
/// # Errors
///
/// Any I/O error creating the directory or writing the files.
///
/// ```no_run
/// let written = fetchq_core::extension::write_files("/usr/share/postgresql/15/extension")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_files(dir: impl AsRef<Path>) -> std::io::Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir)?;
    let latest = latest_schema_version();
    let mut files = vec![
        (dir.join("fetchq.control"), control_file()),
        (
            dir.join(format!("fetchq--{}.sql", version_for(latest))),
            install_script(),
        ),
    ];
    for from in 1..latest {
        if let Some(script) = upgrade_script(from) {
            let name = format!(
                "fetchq--{}--{}.sql",
                version_for(from),
                version_for(from + 1)
            );
            files.push((dir.join(name), script));
        }
    }
    let mut written = Vec::with_capacity(files.len());
    for (path, text) in files {
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
