//! The private PostgreSQL of a benchmark run, one fresh database per workload.

use fetchq_core::embedded::{EmbeddedError, EmbeddedPostgres};
use sqlx::ConnectOptions;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub(crate) struct Server {
    pg: EmbeddedPostgres,
    url: String,
}

impl Server {
    /// Starts (or reuses) the benchmark cluster with fixed settings.
    pub(crate) fn start() -> Result<Self, EmbeddedError> {
        let dir = std::env::temp_dir().join("fetchq-bench").join("pg");
        let pg = EmbeddedPostgres::new(dir)?
            .setting("fsync", "on")
            .setting("synchronous_commit", "on")
            .setting("shared_buffers", "256MB")
            .setting("max_connections", "200");
        // restart so the settings of this run apply
        pg.stop()?;
        let url = pg.start()?.url("postgres");
        Ok(Self { pg, url })
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} (data in {})", self.url, self.pg.data_dir().display())
    }

    /// A fresh database named `name` (dropped first if it exists).
    pub(crate) async fn database(
        &self,
        name: &str,
        connections: u32,
    ) -> Result<(PgPool, String), sqlx::Error> {
        let admin = PgPool::connect(&self.url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&admin)
            .await?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await?;
        admin.close().await;
        let options: PgConnectOptions = self.url.parse()?;
        let options = options.database(name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await?;
        Ok((pool, url))
    }

    /// Another pool on the existing database `name`.
    pub(crate) async fn database_pool(
        &self,
        name: &str,
        connections: u32,
    ) -> Result<(PgPool, String), sqlx::Error> {
        let options: PgConnectOptions = self.url.parse()?;
        let options = options.database(name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await?;
        Ok((pool, url))
    }

    /// The PostgreSQL binaries (pg_dump, pg_restore).
    pub(crate) fn bin_dir(&self) -> std::path::PathBuf {
        self.pg.bin_dir().to_path_buf()
    }

    /// Drops a database of the run.
    pub(crate) async fn drop_database(&self, name: &str) -> Result<(), sqlx::Error> {
        let admin = PgPool::connect(&self.url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&admin)
            .await?;
        admin.close().await;
        Ok(())
    }

    pub(crate) fn stop(&self) {
        if let Err(e) = self.pg.stop() {
            eprintln!("could not stop the benchmark server: {e}");
        }
    }
}
