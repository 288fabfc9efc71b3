//! Persistent state: collections, subjects, samples (the original image and one embedding per model
//! version), API keys, model versions and retrain jobs.
//!
//! sqlx's `Any` driver runs the same portable SQL (`migrations/`) on SQLite — the embedded default, one
//! file — and on PostgreSQL, chosen by the URL. Queries use `$N` placeholders, which both accept. With
//! PostgreSQL every change to a gallery is also announced with `pg_notify` inside its transaction, so other
//! replicas hear of it exactly when it commits (see [`crate::gallery::sync`]).

mod gallery;
mod jobs;
mod keys;
mod records;

pub use jobs::{CollectionSample, JobRecord, VersionRecord};
pub use keys::ApiKeyRecord;
pub use records::{Change, Collection, EmbeddingRow, NewSample, QualityPolicy, Sample, StoredEmbedding, Subject};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The PostgreSQL channel on which gallery changes are announced.
pub const CHANGE_CHANNEL: &str = "siamese_gallery";

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} '{name}' does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    Conflict { kind: &'static str, name: String },
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://...")]
    BadUrl(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    fn not_found(kind: &'static str, name: &str) -> Self {
        StoreError::NotFound { kind, name: name.to_string() }
    }

    /// Map a unique-constraint violation to `Conflict`, anything else to `Db`.
    fn conflict_or(e: sqlx::Error, kind: &'static str, name: &str) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Conflict { kind, name: name.to_string() }
            }
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A connection pool to the database, migrated.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish()
    }
}

impl Store {
    /// Connect to `url` (`sqlite://path/file.db` — created with its folder when missing — or
    /// `postgres://...`) and apply pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err(StoreError::BadUrl(url.to_string()));
            }
            if path != ":memory:" {
                if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Db(sqlx::Error::Configuration(Box::new(e))))?;
                }
            }
            let url = if url.contains("mode=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Erasure: deleted content is overwritten in the file, not merely unlinked.
                        conn.execute("PRAGMA secure_delete = ON").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if sqlite {
            // WAL lets readers proceed while one writer commits (ignored for in-memory databases).
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend, url })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL this store was opened with (for a replica's change listener).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Close every connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// After an erasure: with SQLite, fold the write-ahead log into the database file and truncate it, so
    /// the erased bytes (overwritten in the file by `secure_delete`) survive in no WAL frame either. Best
    /// effort: a reader holding an old snapshot can make the checkpoint partial (logged; the next erasure
    /// or SQLite's own checkpoint finishes it).
    pub(crate) async fn scrub(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        for _ in 0..20 {
            match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.pool).await {
                Ok(row) => {
                    use sqlx::Row;
                    if row.try_get::<i64, _>(0).unwrap_or(1) == 0 {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "checkpoint after erasure failed"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        tracing::warn!("the write-ahead log could not be truncated after an erasure (readers busy)");
    }

    /// Announce a change to other replicas inside transaction `tx` (PostgreSQL only; delivered on commit).
    async fn announce(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, payload: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGE_CHANNEL).bind(payload).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A fresh random id such as `smp_3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6`.
pub fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get(col).map_err(StoreError::Db)
}
