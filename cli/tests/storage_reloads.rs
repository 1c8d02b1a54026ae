//! Stores across reloads, on SQLite and PostgreSQL: 50 reloads that leave a store alone open
//! no connection (the pool's own counter on SQLite, `pg_stat_activity` on PostgreSQL), a
//! try-activate connects nowhere, and the storage config errors name their places.

mod common;

use common::{Fixture, Kind, execute, reload, store_status, titles};
use serde_json::{Value, json};
use swapvisor::config::Config;
use swapvisor::{Registry, ReloadOutcome, Runtime};

/// The server's connections of the store (PostgreSQL, by their process ids), or the pool's own
/// count of the connections it opened, with when it opened (SQLite).
async fn connections(runtime: &Runtime, watcher: Option<&sqlx::PgPool>) -> Vec<Value> {
    match watcher {
        Some(watcher) => {
            let query = "SELECT pid::int8 FROM pg_stat_activity WHERE application_name = 'swapvisor/db' ORDER BY pid";
            let rows: Vec<(i64,)> = sqlx::query_as(query).fetch_all(watcher).await.unwrap();
            rows.into_iter().map(|(pid,)| json!(pid)).collect()
        }
        None => {
            let pool = &store_status(runtime).await["pool"];
            vec![pool["opened"].clone(), pool["openedAt"].clone()]
        }
    }
}

/// 50 reloads that leave the store alone open no connection; try-activate and a changed
/// store's dry run touch no database.
async fn reloads_keep_the_pool(fixture: Fixture) {
    let watcher = match &fixture.kind {
        Kind::Postgres(server) => Some(server.connect("keep").await),
        Kind::Sqlite => None,
    };
    // One connection: sqlx gives a connection back to its pool a moment after a statement, so
    // with more allowed, the next statement may open another. One makes every reload's
    // connection the same one, unless the reload replaced the pool.
    let one = ", maxConnections: 1";
    let runtime = Runtime::start(fixture.config(1, one), Registry::with_builtins())
        .await
        .expect("the config activates");
    execute(&runtime, "create", json!({"title": "kept"})).await;
    let before = connections(&runtime, watcher.as_ref()).await;
    assert!(
        !before.is_empty() && before[0] != 0,
        "the store holds a connection: {before:?}"
    );
    for version in 2..=51 {
        let outcome = reload(&runtime, fixture.config(version, one)).await;
        assert!(
            matches!(outcome, ReloadOutcome::Activated { .. }),
            "{outcome:?}"
        );
        assert_eq!(titles(&runtime).await, ["kept"]);
    }
    assert_eq!(
        execute(&runtime, "version", json!({})).await,
        json!({"version": 51})
    );
    assert_eq!(
        connections(&runtime, watcher.as_ref()).await,
        before,
        "50 reloads opened a connection"
    );

    // A try-activate of a changed store builds it, and connects nowhere.
    let tried = runtime
        .try_activate(fixture.config(52, ", maxConnections: 2"))
        .await
        .unwrap();
    assert!(tried.is_ok(), "{tried:?}");
    assert_eq!(
        connections(&runtime, watcher.as_ref()).await,
        before,
        "a try-activate connected"
    );
    if let Kind::Sqlite = fixture.kind {
        let elsewhere = fixture.dir.path().join("never.db");
        let config = fixture
            .text(52, "")
            .replace(&fixture.database, &elsewhere.display().to_string());
        let tried = runtime
            .try_activate(Config::parse(config.as_bytes()).unwrap())
            .await
            .unwrap();
        assert!(tried.is_ok(), "{tried:?}");
        assert!(
            !elsewhere.exists(),
            "a try-activate created the database file"
        );
    }
    runtime.shutdown().await.unwrap();
    if let Some(watcher) = watcher {
        // The server ends a backend a moment after its client closed: bounded, it must.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut left = connections(&runtime, Some(&watcher)).await;
        while !left.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            left = connections(&runtime, Some(&watcher)).await;
        }
        assert_eq!(
            left,
            Vec::<Value>::new(),
            "the store's connections outlived the runtime"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reloads_keep_the_pool() {
    reloads_keep_the_pool(Fixture::new(Kind::Sqlite, "keep").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reloads_keep_the_pool() {
    let Some(server) = common::Postgres::start("the PostgreSQL storage tests") else {
        return;
    };
    reloads_keep_the_pool(Fixture::new(Kind::Postgres(server), "keep").await).await;
}

/// Config errors at their places: a template in the SQL (with how to bind it), an unknown
/// store, a transaction on a module that runs none, settings of the other step type.
#[tokio::test]
async fn storage_config_errors_name_their_place() {
    let errors = |text: &str| -> String {
        let config = Config::parse(text.as_bytes()).unwrap();
        futures::executor::block_on(swapvisor::Engine::build(
            &config,
            &Registry::with_builtins(),
        ))
        .err()
        .map(|e| e.to_string())
        .expect("the config must not build")
    };
    let store = "modules: [{ name: db, type: storage.sqlite, config: { path: ':memory:' } }, { name: web, type: http.server, config: { address: '127.0.0.1:0' } }]";
    let templated = errors(&format!(
        "{store}\npipelines: {{ p: {{ steps: [{{ name: q, type: step.db_query, config: {{ store: db, sql: \"SELECT * FROM notes WHERE id = {{{{ request.id }}}}\" }} }}] }} }}"
    ));
    assert!(
        templated.starts_with("pipelines.p.steps[0] (name \"q\").config.sql: holds a template"),
        "{templated}"
    );
    assert!(
        templated.contains("params: [\"{{ request.params.id }}\"]"),
        "{templated}"
    );
    let unknown = errors(&format!(
        "{store}\npipelines: {{ p: {{ steps: [{{ name: q, type: step.db_exec, config: {{ store: bd, sql: \"DELETE FROM notes\" }} }}] }} }}"
    ));
    assert_eq!(
        unknown,
        "pipelines.p.steps[0] (name \"q\").config.store: unknown store \"bd\" (did you mean \"db\"?; stores: db)"
    );
    let not_a_store = errors(&format!(
        "{store}\npipelines: {{ p: {{ transaction: web, steps: [] }} }}"
    ));
    assert_eq!(
        not_a_store,
        "pipelines.p.transaction: module \"web\" is a http.server, which runs no transactions (modules that do: db)"
    );
    let misplaced = errors(&format!(
        "{store}\npipelines: {{ p: {{ steps: [{{ name: q, type: step.db_exec, config: {{ store: db, sql: \"DELETE FROM notes\", one: true }} }}] }} }}"
    ));
    assert!(
        misplaced.starts_with(
            "pipelines.p.steps[0] (name \"q\").config.one: is a step.db_query setting"
        ),
        "{misplaced}"
    );
    let postgres = errors(
        "modules: [{ name: db, type: storage.postgres, config: { urlEnv: SWAPVISOR_TEST_NO_SUCH_VARIABLE } }]",
    );
    assert_eq!(
        postgres,
        "modules[0] (name \"db\").config.urlEnv: the environment has no SWAPVISOR_TEST_NO_SUCH_VARIABLE: set it to the connection string"
    );
}

/// Waits (bounded) until the store's status satisfies `check`, and returns it.
async fn wait_for_store(
    runtime: &Runtime,
    what: &str,
    check: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> serde_json::Map<String, Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = store_status(runtime).await;
        if check(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {status:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The pool in status and on `/metrics`: size, in use, waits, statements and their durations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_shows_its_pool_in_status_and_metrics() {
    let fixture = Fixture::new(Kind::Sqlite, "metrics").await;
    let runtime = Runtime::start(
        fixture.config(1, ", maxConnections: 1"),
        Registry::with_builtins(),
    )
    .await
    .expect("the config activates");
    let runtime = std::sync::Arc::new(runtime);
    execute(&runtime, "create", json!({"title": "one"})).await;
    // sqlx gives the connection back a moment after the statement: until then the next
    // acquire waits too, and would count.
    wait_for_store(&runtime, "the connection is back", |s| {
        s["pool"]["idle"] == 1
    })
    .await;
    // A transaction holds the one connection (until its time limit) while a query waits.
    let slow = {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.execute("slow", json!({"title": "held"})).await })
    };
    wait_for_store(&runtime, "the transaction holds the connection", |s| {
        s["pool"]["inUse"] == 1
    })
    .await;
    assert_eq!(titles(&runtime).await, ["one"]);
    assert!(
        slow.await.unwrap().is_err(),
        "the transaction passed its time limit"
    );
    let status = wait_for_store(&runtime, "the connection is back", |s| {
        s["pool"]["idle"] == 1
    })
    .await;
    assert_eq!(status["database"], "sqlite");
    let pool = &status["pool"];
    assert_eq!(
        (
            &pool["size"],
            &pool["inUse"],
            &pool["max"],
            &pool["opened"],
            &pool["waits"]
        ),
        (&json!(1), &json!(0), &json!(1), &json!(1), &json!(1)),
        "{pool}"
    );
    assert_eq!(status["statements"], json!({"run": 3, "failed": 0}));

    let metrics = swapvisor::admin::Metrics::default();
    let text = metrics.render(&runtime.status().await.unwrap(), &runtime);
    common::assert_has_lines(
        &text,
        [
            r#"swapvisor_store_connections{module="db",state="idle"} 1"#,
            r#"swapvisor_store_connections{module="db",state="in_use"} 0"#,
            r#"swapvisor_store_max_connections{module="db"} 1"#,
            r#"swapvisor_store_connections_opened_total{module="db"} 1"#,
            r#"swapvisor_store_acquire_waits_total{module="db"} 1"#,
            r#"swapvisor_store_statements_total{module="db",outcome="ok"} 3"#,
            r#"swapvisor_store_statements_total{module="db",outcome="failed"} 0"#,
            r#"swapvisor_store_statement_duration_seconds_count{module="db"} 3"#,
        ],
    );
    runtime.shutdown().await.unwrap();
}
