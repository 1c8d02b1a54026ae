//! A store's pool and the statements run on it, for both databases.
//!
//! [`Database`] is what a store module lends its steps. It is built with the module (its
//! connect options only: nothing connects at build) and gets its pool at start. Each statement
//! runs on one connection: the run's open transaction when its pipeline has one on this store,
//! else one taken from the pool for that statement. PostgreSQL statements are described once
//! (the server says which type each `$n` has) and the answer kept by SQL text, so parameters are
//! converted to their column's type (see [`super::values`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgTypeInfo};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions};
use sqlx::{Either, Executor, Postgres, Sqlite};

use super::values::{pg_param, pg_value, sqlite_arguments, sqlite_row};
use crate::extension::metrics::Histogram;
use crate::extension::{StepError, Transaction, Transactions};

/// How a store connects: its database's options and its pool's.
pub(super) enum Connect {
    Sqlite(Box<SqliteConnectOptions>, SqlitePoolOptions),
    Postgres(Box<PgConnectOptions>, PgPoolOptions),
}

/// A running pool.
#[derive(Clone)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// What a store counts, for status and `/metrics`.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Connections the pool opened (each one a new connection on the server).
    pub(super) opened: AtomicU64,
    /// Acquires that found every connection in use and waited for one.
    pub(super) waits: AtomicU64,
    /// Statements run, and the ones of them that failed.
    pub(super) statements: AtomicU64,
    pub(super) failed: AtomicU64,
}

/// A store, as its steps and pipelines use it.
pub(crate) struct Database {
    pub(super) name: String,
    /// `sqlite` or `postgres`, for messages.
    pub(super) kind: &'static str,
    connect: std::sync::Mutex<Option<Connect>>,
    pool: OnceLock<Pool>,
    pub(super) max_connections: u32,
    pub(super) counters: Arc<Counters>,
    pub(super) durations: OnceLock<Histogram>,
    /// When the pool opened (RFC 3339): a store carried across a reload keeps it.
    pub(super) opened_at: OnceLock<String>,
    described: DashMap<String, Arc<[PgTypeInfo]>>,
}

/// What a statement run for `step.db_exec` did.
#[derive(Debug)]
pub(super) struct Executed {
    pub(super) rows_affected: u64,
    /// SQLite's rowid of the last row inserted (on the connection), for an INSERT.
    pub(super) last_insert_id: Option<i64>,
}

/// What a statement is run for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Want {
    /// Its rows, at most this many (more is an error).
    Rows(usize),
    /// Its first row, if any.
    First,
    /// The rows it changed.
    Count,
}

impl Want {
    /// Reads rows from `stream` into JSON by `convert`, as many as this wants.
    async fn read<R>(
        self,
        mut stream: futures::stream::BoxStream<'_, Result<R, sqlx::Error>>,
        convert: fn(&R) -> Result<Value, String>,
    ) -> Result<Ran, String> {
        use futures::TryStreamExt as _;
        let mut rows = Vec::new();
        while let Some(row) = stream.try_next().await.map_err(|e| e.to_string())? {
            if let Want::Rows(max) = self
                && rows.len() == max
            {
                return Err(format!(
                    "the query gave more than maxRows ({max}) rows: add a LIMIT, or raise maxRows"
                ));
            }
            // The statement runs to its end even when only its first row is kept: cut short,
            // an INSERT ... RETURNING would hold its implicit transaction open a while.
            if matches!(self, Want::First) && !rows.is_empty() {
                continue;
            }
            rows.push(convert(&row)?);
        }
        Ok(Ran::Rows(rows))
    }
}

/// A statement's result.
pub(super) enum Ran {
    Rows(Vec<Value>),
    Count(Executed),
}

/// An open transaction on a store: what its steps find in [`crate::extension::RunTransaction`].
pub(super) enum Open {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// One connection a statement runs on.
enum Connection<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Database {
    pub(super) fn new(name: &str, kind: &'static str, connect: Connect, max: u32) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            connect: std::sync::Mutex::new(Some(connect)),
            pool: OnceLock::new(),
            max_connections: max,
            counters: Arc::default(),
            durations: OnceLock::new(),
            opened_at: OnceLock::new(),
            described: DashMap::new(),
        }
    }

    /// Opens the pool (and one connection, to know the database answers). A second call
    /// finds it open.
    pub(super) async fn open(&self) -> Result<Pool, String> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool.clone());
        }
        let connect = crate::net::lock(&self.connect).take();
        let Some(connect) = connect else {
            return Err(format!("store {:?} was closed", self.name));
        };
        let text = |e: sqlx::Error| e.to_string();
        let pool = match connect {
            Connect::Sqlite(options, pool) => {
                let pool = self.counted(pool);
                Pool::Sqlite(pool.connect_with(*options).await.map_err(text)?)
            }
            Connect::Postgres(options, pool) => {
                let pool = self.counted(pool);
                Pool::Postgres(pool.connect_with(*options).await.map_err(text)?)
            }
        };
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let _ = self.opened_at.set(now.to_string());
        Ok(self.pool.get_or_init(|| pool).clone())
    }

    /// `pool`, counting each connection it opens.
    fn counted<DB: sqlx::Database>(&self, pool: PoolOptions<DB>) -> PoolOptions<DB> {
        let counters = self.counters.clone();
        pool.after_connect(move |_, _| {
            counters.opened.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        })
    }

    /// The pool, once started.
    pub(super) fn pool(&self) -> Option<&Pool> {
        self.pool.get()
    }

    /// Counts a wait when every connection is in use.
    fn note_acquire(&self, pool: &Pool) {
        let (size, idle) = pool.usage();
        if idle == 0 && size >= self.max_connections {
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn started(&self) -> Result<&Pool, String> {
        self.pool()
            .ok_or_else(|| format!("store {:?} has not started", self.name))
    }

    /// Runs `sql` with `params`, inside `open` when given, else on a connection of its own.
    pub(super) async fn run(
        &self,
        sql: &str,
        params: &[Value],
        want: Want,
        open: Option<&mut Open>,
    ) -> Result<Ran, String> {
        let began = Instant::now();
        let ran = match open {
            Some(Open::Sqlite(tx)) => self.on(Connection::Sqlite(tx), sql, params, want).await,
            Some(Open::Postgres(tx)) => self.on(Connection::Postgres(tx), sql, params, want).await,
            None => {
                let pool = self.started()?;
                self.note_acquire(pool);
                match pool {
                    Pool::Sqlite(pool) => {
                        let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
                        self.on(Connection::Sqlite(&mut conn), sql, params, want)
                            .await
                    }
                    Pool::Postgres(pool) => {
                        let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
                        self.on(Connection::Postgres(&mut conn), sql, params, want)
                            .await
                    }
                }
            }
        };
        self.counters.statements.fetch_add(1, Ordering::Relaxed);
        if ran.is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(durations) = self.durations.get() {
            durations.observe(began.elapsed().as_secs_f64());
        }
        ran
    }

    async fn on(
        &self,
        connection: Connection<'_>,
        sql: &str,
        params: &[Value],
        want: Want,
    ) -> Result<Ran, String> {
        match connection {
            Connection::Sqlite(conn) => {
                let query = sqlx::query_with(sql, sqlite_arguments(params)?);
                match want {
                    Want::Rows(_) | Want::First => want.read(query.fetch(conn), sqlite_row).await,
                    Want::Count => {
                        let done = query.execute(conn).await.map_err(|e| e.to_string())?;
                        let inserted = done.rows_affected() > 0 && is_insert(sql);
                        Ok(Ran::Count(Executed {
                            rows_affected: done.rows_affected(),
                            last_insert_id: inserted.then(|| done.last_insert_rowid()),
                        }))
                    }
                }
            }
            Connection::Postgres(conn) => {
                let types = self.describe(conn, sql).await?;
                if types.len() != params.len() {
                    return Err(format!(
                        "the SQL has {} parameter(s) ($1...) and params gives {}",
                        types.len(),
                        params.len()
                    ));
                }
                let mut query = sqlx::query::<Postgres>(sql);
                for (n, (value, ty)) in params.iter().zip(types.iter()).enumerate() {
                    query = query.bind(pg_param(value, ty, n + 1)?);
                }
                match want {
                    Want::Rows(_) | Want::First => want.read(query.fetch(conn), pg_row).await,
                    Want::Count => {
                        let done = query.execute(conn).await.map_err(|e| e.to_string())?;
                        Ok(Ran::Count(Executed {
                            rows_affected: done.rows_affected(),
                            last_insert_id: None,
                        }))
                    }
                }
            }
        }
    }

    /// The types of `sql`'s parameters, asked of the server once per statement text.
    async fn describe(
        &self,
        conn: &mut PgConnection,
        sql: &str,
    ) -> Result<Arc<[PgTypeInfo]>, String> {
        if let Some(types) = self.described.get(sql) {
            return Ok(types.clone());
        }
        let described = conn.describe(sql).await.map_err(|e| e.to_string())?;
        let types: Arc<[PgTypeInfo]> = match described.parameters() {
            Some(Either::Left(types)) => types.into(),
            Some(Either::Right(0)) | None => Arc::from([]),
            Some(Either::Right(n)) => {
                return Err(format!(
                    "the server did not type the SQL's {n} parameter(s)"
                ));
            }
        };
        // Bounded: one entry per statement of the built steps, which are few.
        if self.described.len() < 4096 {
            self.described.insert(sql.to_owned(), types.clone());
        }
        Ok(types)
    }

    /// Closes the pool by `deadline`: connections in use finish their statement first.
    pub(super) async fn close(&self, deadline: tokio::time::Instant) {
        let closing = async {
            match self.pool() {
                Some(Pool::Sqlite(pool)) => pool.close().await,
                Some(Pool::Postgres(pool)) => pool.close().await,
                None => {}
            }
        };
        if tokio::time::timeout_at(deadline, closing).await.is_err() {
            tracing::warn!(store = %self.name, "connections still in use at the stop deadline: closed as they come back");
        }
    }
}

fn pg_row(row: &sqlx::postgres::PgRow) -> Result<Value, String> {
    use sqlx::{Column, Row};
    let mut object = serde_json::Map::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        object.insert(column.name().to_owned(), pg_value(raw, column.name())?);
    }
    Ok(Value::Object(object))
}

/// Whether `sql` is an INSERT (or REPLACE), whose rowid SQLite reports.
fn is_insert(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or("");
    first.eq_ignore_ascii_case("insert") || first.eq_ignore_ascii_case("replace")
}

impl Pool {
    /// Connections open, and how many of them are idle.
    pub(super) fn usage(&self) -> (u32, usize) {
        match self {
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
        }
    }
}

impl Transactions for Database {
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>, StepError>> {
        Box::pin(async move {
            let pool = self.started().map_err(StepError::new)?;
            self.note_acquire(pool);
            let open = match pool {
                Pool::Sqlite(pool) => pool.begin().await.map(Open::Sqlite),
                Pool::Postgres(pool) => pool.begin().await.map(Open::Postgres),
            };
            let open = open.map_err(StepError::new)?;
            Ok(Box::new(open) as Box<dyn Transaction>)
        })
    }
}

impl Transaction for Open {
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StepError>> {
        Box::pin(async move {
            match *self {
                Open::Sqlite(tx) => tx.commit().await,
                Open::Postgres(tx) => tx.commit().await,
            }
            .map_err(StepError::new)
        })
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StepError>> {
        Box::pin(async move {
            match *self {
                Open::Sqlite(tx) => tx.rollback().await,
                Open::Postgres(tx) => tx.rollback().await,
            }
            .map_err(StepError::new)
        })
    }

    fn as_any(&mut self) -> &mut (dyn std::any::Any + Send) {
        self
    }
}
