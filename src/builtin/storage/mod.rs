//! `storage.sqlite` and `storage.postgres`: stores that pipelines read and write, with pools
//! that live across reloads and migrations that obey the reload contract.
//!
//! A store module holds a [`Database`]: connect options checked at build, and a pool opened
//! when the module starts. It lends the database to `step.db_query` and `step.db_exec`
//! ([`steps`]) and runs the transactions of pipelines whose `transaction:` names it. Both
//! databases are reached through sqlx, so the steps and the transaction model are the same on
//! each; SQLite is compiled in, so a store needs no server.
//!
//! Across reloads a store is a module like any other: unchanged, it is carried into the new
//! engine with its pool and open connections (a reload opens no new connection); changed, the
//! new engine starts a new pool (and runs its migrations, [`migrate`]) while the old one serves
//! on, and the old pool drains under the stop deadline once the old engine retires. A store is
//! also rebuilt when its migrations folder or its `urlFile` changed, though its config did not.

mod database;
mod metrics;
mod migrate;
mod settings;
mod steps;
mod values;

use std::any::Any;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::config::ConfigErrors;
use crate::extension::{Module, ModuleBuild, ModuleContext, ModuleError, Transactions};
use crate::net::lock;
use database::Database;
use migrate::Migrations;

/// The module types' names.
pub(super) const SQLITE: &str = "storage.sqlite";
pub(super) const POSTGRES: &str = "storage.postgres";
/// The step types' names.
pub(super) const DB_QUERY: &str = "step.db_query";
pub(super) const DB_EXEC: &str = "step.db_exec";

pub(super) use steps::{build_exec, build_query};

/// One store.
struct Store {
    database: Arc<Database>,
    migrations: Option<Migrations>,
    url_file: Option<(std::path::PathBuf, [u8; 32])>,
    /// The migration files its start applied.
    applied: Mutex<Vec<String>>,
}

pub(super) fn build_sqlite(build: &ModuleBuild<'_>) -> Result<Box<dyn Module>, ConfigErrors> {
    let raw: settings::Sqlite = build.settings()?;
    store(build, "sqlite", raw.check(build)?)
}

pub(super) fn build_postgres(build: &ModuleBuild<'_>) -> Result<Box<dyn Module>, ConfigErrors> {
    let raw: settings::Postgres = build.settings()?;
    store(build, "postgres", raw.check(build)?)
}

fn store(
    build: &ModuleBuild<'_>,
    kind: &'static str,
    checked: settings::Checked,
) -> Result<Box<dyn Module>, ConfigErrors> {
    let database = Database::new(build.name, kind, checked.connect, checked.max_connections);
    Ok(Box::new(Store {
        database: Arc::new(database),
        migrations: checked.migrations,
        url_file: checked.url_file,
        applied: Mutex::default(),
    }))
}

impl Module for Store {
    fn start<'a>(&'a self, context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            metrics::register(&self.database, &context.metrics)?;
            let database = &self.database;
            let pool = database.open().await.map_err(|e| {
                ModuleError(format!("store {:?} could not connect: {e}", database.name))
            })?;
            if let Some(migrations) = &self.migrations {
                match migrations.apply(&pool).await {
                    Ok(applied) => {
                        if !applied.is_empty() {
                            tracing::info!(store = %database.name, migrations = ?applied, "migrations applied");
                        }
                        *lock(&self.applied) = applied;
                    }
                    Err(e) => {
                        database.close(Instant::now()).await;
                        return Err(ModuleError(format!("store {:?}: {e}", database.name)));
                    }
                }
            }
            Ok(())
        })
    }

    fn stop(&self, deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async move {
            self.database.close(deadline).await;
            Ok(())
        })
    }

    fn status(&self) -> Map<String, Value> {
        let database = &self.database;
        let counters = &database.counters;
        let (size, idle) = database.pool().map_or((0, 0), |p| p.usage());
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let mut status = Map::new();
        status.insert("database".into(), json!(database.kind));
        status.insert(
            "pool".into(),
            json!({
                "size": size,
                "idle": idle,
                "inUse": (size as usize).saturating_sub(idle),
                "max": database.max_connections,
                "opened": load(&counters.opened),
                "openedAt": database.opened_at.get(),
                "waits": load(&counters.waits),
            }),
        );
        status.insert(
            "statements".into(),
            json!({"run": load(&counters.statements), "failed": load(&counters.failed)}),
        );
        if let Some(migrations) = &self.migrations {
            status.insert(
                "migrations".into(),
                json!({
                    "folder": migrations.folder.display().to_string(),
                    "files": migrations.files.len(),
                    "appliedAtStart": *lock(&self.applied),
                }),
            );
        }
        status
    }

    fn carry_over(&self) -> bool {
        // What the store read from files at build must still be what the files hold.
        self.migrations.as_ref().is_none_or(Migrations::unchanged)
            && self
                .url_file
                .as_ref()
                .is_none_or(|(path, digest)| settings::still_holds(path, digest))
    }

    fn lend(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.database.clone())
    }

    fn transactions(&self) -> Option<Arc<dyn Transactions>> {
        Some(self.database.clone())
    }
}
