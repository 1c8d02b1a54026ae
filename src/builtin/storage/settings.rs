//! The settings of `storage.sqlite` and `storage.postgres`, checked at build into the options
//! their pools connect with. Nothing connects here.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::database::Connect;
use super::migrate::Migrations;
use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::ModuleBuild;

/// The most bytes a `urlFile` may hold.
const MAX_URL_FILE_BYTES: u64 = 64 * 1024;

/// What both stores take.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Sqlite {
    path: String,
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    busy_timeout: Option<String>,
    acquire_timeout: Option<String>,
    migrations: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Postgres {
    url_env: Option<String>,
    url_file: Option<String>,
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    statement_timeout: Option<String>,
    acquire_timeout: Option<String>,
    application_name: Option<String>,
    #[serde(default)]
    tls: Tls,
    migrations: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Tls {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// A store's checked settings.
pub(super) struct Checked {
    pub(super) connect: Connect,
    pub(super) max_connections: u32,
    pub(super) migrations: Option<Migrations>,
    /// The `urlFile` read, and a digest of what it held: a store is carried across a reload
    /// only while the file holds the same.
    pub(super) url_file: Option<(PathBuf, [u8; 32])>,
}

fn duration(
    text: &Option<String>,
    at: impl Fn() -> String,
    default: Duration,
) -> Result<Duration, ConfigErrors> {
    match text {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|m| ConfigError::new(at(), m).into()),
    }
}

/// Pool sizes: `max` from 1 to 1,000 (default `default_max`), `min` at most `max`.
fn sizes(
    max: Option<u32>,
    min: Option<u32>,
    default_max: u32,
    build: &ModuleBuild<'_>,
) -> Result<(u32, u32), ConfigErrors> {
    let at = |f: &str| place::field(build.place, f);
    let max = max.unwrap_or(default_max);
    if !(1..=1000).contains(&max) {
        return Err(ConfigError::new(
            at("maxConnections"),
            format!("{max} is out of range: from 1 to 1000"),
        )
        .into());
    }
    let min = min.unwrap_or(0);
    if min > max {
        return Err(ConfigError::new(
            at("minConnections"),
            format!("{min} is above maxConnections ({max})"),
        )
        .into());
    }
    Ok((max, min))
}

fn migrations(
    folder: &Option<String>,
    build: &ModuleBuild<'_>,
) -> Result<Option<Migrations>, ConfigErrors> {
    folder
        .as_ref()
        .map(|folder| {
            Migrations::read(Path::new(folder))
                .map_err(|m| ConfigError::new(place::field(build.place, "migrations"), m).into())
        })
        .transpose()
}

impl Sqlite {
    pub(super) fn check(self, build: &ModuleBuild<'_>) -> Result<Checked, ConfigErrors> {
        let at = |f: &str| place::field(build.place, f);
        if self.path.trim().is_empty() {
            return Err(ConfigError::new(at("path"), "must not be empty: a file path, or :memory: for a database that lives as long as the store").into());
        }
        let in_memory = self.path == ":memory:";
        let (max, min) = sizes(self.max_connections, self.min_connections, 4, build)?;
        if in_memory && self.max_connections.is_some_and(|m| m != 1) {
            return Err(ConfigError::new(
                at("maxConnections"),
                "a :memory: database is one connection's own: leave maxConnections out (it is 1)",
            )
            .into());
        }
        let busy = duration(
            &self.busy_timeout,
            || at("busyTimeout"),
            Duration::from_secs(5),
        )?;
        let acquire = duration(
            &self.acquire_timeout,
            || at("acquireTimeout"),
            Duration::from_secs(10),
        )?;
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:")
                .map_err(|e| ConfigError::new(at("path"), e.to_string()))?
        } else {
            SqliteConnectOptions::new()
                .filename(&self.path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        };
        let options = options.busy_timeout(busy).foreign_keys(true);
        let pool = SqlitePoolOptions::new().acquire_timeout(acquire);
        let (pool, max) = if in_memory {
            // Each connection to :memory: is a database of its own: one, kept for good.
            (
                pool.max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None),
                1,
            )
        } else {
            (pool.max_connections(max).min_connections(min), max)
        };
        Ok(Checked {
            connect: Connect::Sqlite(Box::new(options), pool),
            max_connections: max,
            migrations: migrations(&self.migrations, build)?,
            url_file: None,
        })
    }
}

impl Postgres {
    pub(super) fn check(self, build: &ModuleBuild<'_>) -> Result<Checked, ConfigErrors> {
        let at = |f: &str| place::field(build.place, f);
        let example =
            "for example urlEnv: DATABASE_URL, holding postgres://user:password@host:5432/database";
        let (url, from, url_file) = match (&self.url_env, &self.url_file) {
            (Some(var), None) => {
                let url = (build.env)(var).ok_or_else(|| ConfigError::new(at("urlEnv"), format!("the environment has no {var}: set it to the connection string")))?;
                (url, format!("${var}"), None)
            }
            (None, Some(file)) => {
                let path = PathBuf::from(file);
                let length = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if length > MAX_URL_FILE_BYTES {
                    return Err(ConfigError::new(at("urlFile"), format!("{file:?} has {length} bytes: a connection string has fewer than {MAX_URL_FILE_BYTES}")).into());
                }
                let bytes = std::fs::read(&path).map_err(|e| ConfigError::new(at("urlFile"), format!("cannot read {file:?}: {e}")))?;
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                let url = String::from_utf8_lossy(&bytes).trim().to_owned();
                (url, format!("{file:?}"), Some((path, digest)))
            }
            _ => return Err(ConfigError::new(build.place, format!("give the connection string in exactly one of urlEnv (an environment variable) or urlFile (a file); it is never written in the config, {example}")).into()),
        };
        // The connection string holds a password: an error names where it came from, never it.
        let options = PgConnectOptions::from_str(&url).map_err(|_| {
            ConfigError::new(
                at(if url_file.is_some() {
                    "urlFile"
                } else {
                    "urlEnv"
                }),
                format!("the connection string in {from} does not parse: {example}"),
            )
        })?;
        let (max, min) = sizes(self.max_connections, self.min_connections, 10, build)?;
        let acquire = duration(
            &self.acquire_timeout,
            || at("acquireTimeout"),
            Duration::from_secs(10),
        )?;
        let mut options = options.application_name(
            self.application_name
                .as_deref()
                .unwrap_or(&format!("swapvisor/{}", build.name)),
        );
        if let Some(text) = &self.statement_timeout {
            let limit =
                parse_duration(text).map_err(|m| ConfigError::new(at("statementTimeout"), m))?;
            options = options.options([("statement_timeout", format!("{}", limit.as_millis()))]);
        }
        if let Some(mode) = &self.tls.mode {
            let mode = PgSslMode::from_str(mode).map_err(|_| {
                ConfigError::new(place::field(&at("tls"), "mode"), format!("unknown mode {mode:?} (modes: disable, allow, prefer, require, verify-ca, verify-full)"))
            })?;
            options = options.ssl_mode(mode);
        }
        if let Some(cert) = &self.tls.root_cert {
            if !Path::new(cert).is_file() {
                return Err(ConfigError::new(
                    place::field(&at("tls"), "rootCert"),
                    format!("{cert:?} is not a file (a PEM with the server's CA)"),
                )
                .into());
            }
            options = options.ssl_root_cert(cert);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .min_connections(min)
            .acquire_timeout(acquire);
        Ok(Checked {
            connect: Connect::Postgres(Box::new(options), pool),
            max_connections: max,
            migrations: migrations(&self.migrations, build)?,
            url_file,
        })
    }
}

/// Whether the file at `path` still holds what hashed to `digest`.
pub(super) fn still_holds(path: &Path, digest: &[u8; 32]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| <[u8; 32]>::from(Sha256::digest(&bytes)) == *digest)
}
