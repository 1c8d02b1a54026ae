//! A store for the storage tests (`storage.rs`, `storage_reloads.rs`): a SQLite file or a
//! database on a test's own PostgreSQL server, its migrations folder, and the config whose
//! pipelines exercise it.

use std::path::PathBuf;

use serde_json::{Value, json};
use swapvisor::config::Config;
use swapvisor::{ReloadOutcome, Runtime};

/// Which database a test runs on.
pub(crate) enum Kind {
    Sqlite,
    Postgres(super::Postgres),
}

/// A store to test: its database, its folder (migrations, the SQLite file, the URL file).
pub(crate) struct Fixture {
    pub(crate) kind: Kind,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) database: String,
}

impl Fixture {
    pub(crate) async fn new(kind: Kind, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = match &kind {
            Kind::Sqlite => dir.path().join("notes.db").display().to_string(),
            Kind::Postgres(server) => server.database(name).await,
        };
        let fixture = Self {
            kind,
            dir,
            database,
        };
        std::fs::create_dir_all(fixture.migrations()).unwrap();
        fixture.migration("0001_notes.sql", fixture.dialect(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT, score REAL, done BOOLEAN);",
            "CREATE TABLE notes (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title TEXT NOT NULL, body TEXT, score FLOAT8, done BOOLEAN);",
        ));
        fixture.migration("0002_tags.sql", "CREATE TABLE tags (note_id BIGINT NOT NULL REFERENCES notes (id), tag TEXT NOT NULL);\nCREATE INDEX tags_by_note ON tags (note_id);");
        fixture
    }

    fn dialect<'a>(&self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self.kind {
            Kind::Sqlite => sqlite,
            Kind::Postgres(_) => postgres,
        }
    }

    pub(crate) fn migrations(&self) -> PathBuf {
        self.dir.path().join("migrations")
    }

    pub(crate) fn migration(&self, file: &str, sql: &str) {
        std::fs::write(self.migrations().join(file), sql).unwrap();
    }

    /// The store's module entry, with `extra` settings.
    pub(crate) fn store(&self, extra: &str) -> String {
        let migrations = self.migrations().display().to_string();
        match &self.kind {
            Kind::Sqlite => format!(
                "{{ name: db, type: storage.sqlite, config: {{ path: {:?}, migrations: {migrations:?}{extra} }} }}",
                self.database
            ),
            Kind::Postgres(_) => {
                let file = self.dir.path().join("url");
                std::fs::write(&file, &self.database).unwrap();
                format!(
                    "{{ name: db, type: storage.postgres, config: {{ urlFile: {:?}, migrations: {migrations:?}{extra} }} }}",
                    file.display().to_string()
                )
            }
        }
    }

    /// The behaviour tests' config: `version` answered by `version`, the store with `extra`.
    pub(crate) fn config(&self, version: u32, extra: &str) -> Config {
        let text = self.text(version, extra);
        Config::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    pub(crate) fn text(&self, version: u32, extra: &str) -> String {
        let columns = self.dialect(
            "SELECT name FROM pragma_table_info('notes') ORDER BY cid",
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'notes' ORDER BY ordinal_position",
        );
        format!(
            r#"
modules:
  - {store}
pipelines:
  version:
    steps: [{{ name: v, type: step.set, config: {{ values: {{ version: {version} }} }} }}]
  create:
    steps:
      - name: note
        type: step.db_query
        config:
          store: db
          sql: "INSERT INTO notes (title, body, score, done) VALUES ($1, $2, $3, $4) RETURNING id, title, body, score, done"
          params: ["{{{{ request.title }}}}", "{{{{ request.body }}}}", "{{{{ request.score }}}}", "{{{{ request.done }}}}"]
          one: true
  get:
    steps:
      - {{ name: note, type: step.db_query, config: {{ store: db, sql: "SELECT id, title, body, score, done FROM notes WHERE id = $1", params: ["{{{{ request.id }}}}"], one: true, notFound: true }} }}
  list:
    steps:
      - {{ name: notes, type: step.db_query, config: {{ store: db, sql: "SELECT id, title FROM notes ORDER BY id" }} }}
  delete:
    steps:
      - {{ name: gone, type: step.db_exec, config: {{ store: db, sql: "DELETE FROM notes WHERE id = $1", params: ["{{{{ request.id }}}}"] }} }}
  rename:
    steps:
      - {{ name: renamed, type: step.db_exec, config: {{ store: db, sql: "UPDATE notes SET title = $1 WHERE title = $2", params: ["{{{{ request.to }}}}", "{{{{ request.from }}}}"] }} }}
  pair:
    transaction: db
    steps:
      - {{ name: first, type: step.db_exec, config: {{ store: db, sql: "INSERT INTO notes (title) VALUES ($1)", params: ["{{{{ request.title }}}} one"] }} }}
      - {{ name: second, type: step.db_exec, config: {{ store: db, sql: "INSERT INTO notes (title) VALUES ($1)", params: ["{{{{ request.title }}}} two"] }} }}
  failing_pair:
    transaction: db
    steps:
      - {{ name: first, type: step.db_exec, config: {{ store: db, sql: "INSERT INTO notes (title) VALUES ($1)", params: ["{{{{ request.title }}}}"] }} }}
      - {{ name: second, type: step.db_exec, config: {{ store: db, sql: "INSERT INTO notes (title) VALUES ($1)", params: [null] }} }}
  slow:
    transaction: db
    timeout: 300ms
    steps:
      - {{ name: first, type: step.db_exec, config: {{ store: db, sql: "INSERT INTO notes (title) VALUES ($1)", params: ["{{{{ request.title }}}}"] }} }}
      - {{ name: wait, type: step.delay, config: {{ duration: 5s }} }}
  migrations:
    steps:
      - {{ name: applied, type: step.db_query, config: {{ store: db, sql: "SELECT version, file FROM swapvisor_migrations ORDER BY version" }} }}
  columns:
    steps:
      - {{ name: columns, type: step.db_query, config: {{ store: db, sql: "{columns}" }} }}
"#,
            store = self.store(extra),
        )
    }
}

pub(crate) async fn execute(runtime: &Runtime, pipeline: &str, input: Value) -> Value {
    runtime
        .execute(pipeline, input)
        .await
        .unwrap_or_else(|e| panic!("{pipeline}: {e}"))
}

pub(crate) async fn titles(runtime: &Runtime) -> Vec<String> {
    let list = execute(runtime, "list", json!({})).await;
    let list = list.as_array().expect("a list of rows").iter();
    list.map(|row| row["title"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) async fn store_status(runtime: &Runtime) -> serde_json::Map<String, Value> {
    let status = runtime.status().await.unwrap();
    let db = status
        .modules
        .iter()
        .find(|m| m.name == "db")
        .expect("the store in status");
    db.details.clone()
}

pub(crate) async fn reload(runtime: &Runtime, config: Config) -> ReloadOutcome {
    runtime
        .reload(config)
        .await
        .expect("the runtime answers")
        .outcome
}
