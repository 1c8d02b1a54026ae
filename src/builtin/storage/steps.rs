//! `step.db_query` and `step.db_exec`: one SQL statement on a store, its parameters bound.
//!
//! The SQL text is fixed at build; templates go in `params`, each rendered value bound to its
//! placeholder (`$1`, `$2`, ... on both databases; SQLite also takes `?`), never written into
//! the SQL. So a value holding `'; DROP TABLE notes; --` is stored as that text. A template in
//! the SQL itself is a config error that says how to bind it.
//!
//! `step.db_query` outputs the rows as a list of objects by column name (see
//! [`super::values`] for the types), or with `one: true` the first row (null when none; with
//! `notFound: true`, a 404 answer ends the run instead). It reads at most `maxRows` rows
//! (1,000 by default): more is an error that asks for a LIMIT. `step.db_exec` outputs
//! `{"rowsAffected", "lastInsertId"}` (the rowid of SQLite's INSERT; null on PostgreSQL, where
//! `INSERT ... RETURNING id` through `step.db_query` gives it, as it does on SQLite).
//!
//! In a pipeline whose `transaction:` names the step's store, the statement runs inside the
//! run's transaction.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::database::{Database, Open, Ran, Want};
use crate::config::{ConfigError, ConfigErrors, place};
use crate::extension::template::Template;
use crate::extension::{Step, StepBuild, StepContext, StepError};

/// The most rows `step.db_query` reads by default.
const MAX_ROWS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    store: String,
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    #[serde(default)]
    one: bool,
    #[serde(default)]
    not_found: bool,
    max_rows: Option<usize>,
}

/// One statement on one store.
struct Statement {
    database: Arc<Database>,
    sql: String,
    params: Vec<Template>,
    want: Want,
    one: bool,
    not_found: bool,
}

pub(crate) fn build_query(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    statement(build, true)
}

pub(crate) fn build_exec(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    statement(build, false)
}

fn statement(build: &StepBuild<'_>, query: bool) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: Settings = build.settings()?;
    let at = |f: &str| place::field(build.place, f);
    if !query {
        for (field, set) in [
            ("one", settings.one),
            ("notFound", settings.not_found),
            ("maxRows", settings.max_rows.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(
                    at(field),
                    "is a step.db_query setting: step.db_exec outputs {rowsAffected, lastInsertId}",
                )
                .into());
            }
        }
    }
    if settings.not_found && !settings.one {
        return Err(ConfigError::new(
            at("notFound"),
            "goes with one: true (a 404 when the query finds no row)",
        )
        .into());
    }
    if settings.sql.trim().is_empty() {
        return Err(ConfigError::new(at("sql"), "must not be empty").into());
    }
    if settings.sql.contains("{{") {
        return Err(ConfigError::new(
            at("sql"),
            "holds a template: SQL text is fixed at build, so no request can change it. Bind the value instead: write $1 where it goes and put the template in params, for example sql: \"SELECT * FROM notes WHERE id = $1\", params: [\"{{ request.params.id }}\"]",
        )
        .into());
    }
    let database: Arc<Database> = build
        .modules
        .lend_any(&settings.store, "store", &at("store"))?;
    let mut errors = ConfigErrors::default();
    let mut params = Vec::with_capacity(settings.params.len());
    for (i, value) in settings.params.iter().enumerate() {
        match build.template(&format!("params[{i}]"), value) {
            Ok(template) => params.push(template),
            Err(e) => errors.0.extend(e.0),
        }
    }
    let max_rows = settings.max_rows.unwrap_or(MAX_ROWS);
    if max_rows == 0 {
        errors.push(at("maxRows"), "must be at least 1");
    }
    let step = Statement {
        database,
        sql: settings.sql,
        params,
        want: match (query, settings.one) {
            (false, _) => Want::Count,
            (true, true) => Want::First,
            (true, false) => Want::Rows(max_rows),
        },
        one: settings.one,
        not_found: settings.not_found,
    };
    errors.into_result(Box::new(step) as Box<dyn Step>)
}

impl Step for Statement {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let scope = context.scope();
            let params: Vec<Value> = self
                .params
                .iter()
                .map(|p| p.try_render(&scope))
                .collect::<Result<_, _>>()?;
            let inside = context
                .transaction
                .filter(|t| t.module() == self.database.name);
            let ran = match inside {
                Some(run) => {
                    let mut open = run.lock().await;
                    let open = open
                        .as_mut()
                        .and_then(|t| t.as_any().downcast_mut::<Open>());
                    let Some(open) = open else {
                        return Err(StepError::new("the run's transaction has ended"));
                    };
                    self.database
                        .run(&self.sql, &params, self.want, Some(open))
                        .await
                }
                None => self.database.run(&self.sql, &params, self.want, None).await,
            };
            let ran =
                ran.map_err(|e| StepError::new(format!("store {:?}: {e}", self.database.name)))?;
            Ok(match ran {
                Ran::Rows(rows) if self.one => match rows.into_iter().next() {
                    Some(row) => row,
                    None if self.not_found => {
                        return Err(StepError::respond(404, [], json!({"error": "not found"})));
                    }
                    None => Value::Null,
                },
                Ran::Rows(rows) => Value::Array(rows),
                Ran::Count(done) => json!({
                    "rowsAffected": done.rows_affected,
                    "lastInsertId": done.last_insert_id,
                }),
            })
        })
    }
}
