//! Migrations: a store's schema, changed by ordered SQL files, under the reload contract.
//!
//! A store's `migrations:` names a folder of files `<version>_<name>.sql` (`0001_notes.sql`),
//! applied in version order and recorded in the table `swapvisor_migrations` with a SHA-256 of
//! each file. The folder is read when the store is built (no database is touched then: a
//! `validate` or a try-activate reads files only); the migrations run when the store starts.
//! Every migration that start applies runs in **one** transaction, with the check of those
//! applied before: a file changed since it was applied, an applied file gone, or a failing
//! statement, and nothing of it stays. The start fails, so the reload is rolled back and the
//! database is as it was before it. Both SQLite and PostgreSQL run DDL inside a transaction.
//! One store migrates at a time: PostgreSQL takes a transaction-scoped advisory lock, SQLite
//! begins the transaction `IMMEDIATE`.
//!
//! A store whose config is unchanged is carried across a reload with its pool, unless its
//! folder changed: then it is built and started again, so a new file runs at that reload.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::{Executor as _, Row};

use super::database::Pool;

/// The most files a folder may hold, and the most bytes one may have.
const MAX_FILES: usize = 10_000;
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The table migrations are recorded in, and the statements on it.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS swapvisor_migrations (version BIGINT PRIMARY KEY, file TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)";
const SELECT: &str = "SELECT version, file, checksum FROM swapvisor_migrations ORDER BY version";
const INSERT: &str = "INSERT INTO swapvisor_migrations (version, file, checksum, applied_at) VALUES ($1, $2, $3, $4)";

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) file: String,
    pub(super) checksum: String,
    sql: String,
}

/// A store's migrations folder as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Migrations {
    pub(super) folder: PathBuf,
    pub(super) files: Vec<Migration>,
}

impl Migrations {
    /// Reads `folder`: every `*.sql` file in it, in version order, or what is wrong.
    pub(super) fn read(folder: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(folder).map_err(|e| {
            format!(
                "cannot read the migrations folder {}: {e}",
                folder.display()
            )
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", folder.display()))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if !file.ends_with(".sql") {
                continue;
            }
            if files.len() == MAX_FILES {
                return Err(format!(
                    "{} holds more than {MAX_FILES} migrations",
                    folder.display()
                ));
            }
            let version = file
                .split_once('_')
                .and_then(|(v, _)| v.parse::<i64>().ok().filter(|v| *v > 0))
                .ok_or_else(|| {
                    format!("{file:?} is not named <version>_<name>.sql with a version above 0 (for example 0001_create_notes.sql)")
                })?;
            let path = entry.path();
            let length = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if length > MAX_FILE_BYTES {
                return Err(format!(
                    "{file:?} has {length} bytes; a migration may have {MAX_FILE_BYTES}"
                ));
            }
            let sql = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let checksum = format!("{:x}", Sha256::digest(sql.as_bytes()));
            files.push(Migration {
                version,
                file,
                checksum,
                sql,
            });
        }
        files.sort_by_key(|m| m.version);
        if let Some(pair) = files.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(format!(
                "{:?} and {:?} have the same version {}",
                pair[0].file, pair[1].file, pair[0].version
            ));
        }
        Ok(Self {
            folder: folder.to_owned(),
            files,
        })
    }

    /// Whether the folder still reads as it did.
    pub(super) fn unchanged(&self) -> bool {
        Self::read(&self.folder).is_ok_and(|now| now == *self)
    }

    /// Checks the applied migrations against the files and applies the rest, in one
    /// transaction: the files applied now, or why none was.
    pub(super) async fn apply(&self, pool: &Pool) -> Result<Vec<String>, String> {
        // The same statements on either database's transaction. A macro, not a function
        // generic over the database: rustc cannot yet prove such a function's future `Send`
        // (its `Executor` bounds are higher-ranked).
        macro_rules! apply_in {
            ($tx:expr, $lock:expr) => {{
                let mut tx = $tx.map_err(text)?;
                if let Some(lock) = $lock {
                    (&mut *tx).execute(lock).await.map_err(text)?;
                }
                (&mut *tx).execute(CREATE).await.map_err(text)?;
                let rows = sqlx::query(SELECT).fetch_all(&mut *tx).await.map_err(text)?;
                let applied = rows
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(text)?;
                let pending = self.pending(&applied)?;
                let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
                for m in &pending {
                    let failed = |error: sqlx::Error| {
                        format!("migration {:?} failed: {error}; no migration of this start was applied", m.file)
                    };
                    (&mut *tx).execute(m.sql.as_str()).await.map_err(failed)?;
                    sqlx::query(INSERT)
                        .bind(m.version)
                        .bind(m.file.clone())
                        .bind(m.checksum.clone())
                        .bind(at.clone())
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                }
                tx.commit().await.map_err(text)?;
                Ok(pending.iter().map(|m| m.file.clone()).collect())
            }};
        }
        match pool {
            Pool::Sqlite(pool) => apply_in!(pool.begin_with("BEGIN IMMEDIATE").await, None::<&str>),
            // One migrating store at a time per database, until this transaction ends.
            Pool::Postgres(pool) => apply_in!(
                pool.begin().await,
                Some("SELECT pg_advisory_xact_lock(7243051938)")
            ),
        }
    }

    /// The files not applied yet, after checking the applied ones (`(version, file, checksum)`)
    /// against the folder.
    fn pending(&self, applied: &[(i64, String, String)]) -> Result<Vec<&Migration>, String> {
        let folder = self.folder.display();
        for (version, file, checksum) in applied {
            match self.files.iter().find(|m| m.version == *version) {
                None => {
                    return Err(format!(
                        "migration {file:?} was applied but is no longer in {folder}: an applied migration stays; put it back"
                    ));
                }
                Some(m) if m.checksum != *checksum => {
                    return Err(format!(
                        "migration {:?} in {folder} has changed since it was applied (checksum {} recorded, {} now): never edit an applied migration, add a new one",
                        m.file,
                        short(checksum),
                        short(&m.checksum)
                    ));
                }
                Some(_) => {}
            }
        }
        let last = applied.iter().map(|a| a.0).max().unwrap_or(0);
        let pending: Vec<&Migration> = self
            .files
            .iter()
            .filter(|m| !applied.iter().any(|a| a.0 == m.version))
            .collect();
        if let Some(early) = pending.iter().find(|m| m.version < last) {
            return Err(format!(
                "migration {:?} in {folder} comes before version {last}, which is applied already: give it a version above {last}",
                early.file
            ));
        }
        Ok(pending)
    }
}

fn text(error: sqlx::Error) -> String {
    error.to_string()
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}
