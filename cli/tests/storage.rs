//! `storage.sqlite` and `storage.postgres` through a real runtime: the same behaviour tests on
//! both (queries, statements, bound parameters, transactions committed, rolled back and cut
//! short by the time limit, migrations applied once and in order, a failing migration rolled
//! back with the database unchanged and the old engine serving, a changed checksum refused).
//! PostgreSQL is a real server on a Unix socket in a temporary folder (`common::Postgres`).

mod common;

use common::{Fixture, Kind, execute, reload, store_status, titles};
use serde_json::json;
use swapvisor::extension::ExecuteError;
use swapvisor::{Registry, ReloadOutcome, Runtime};

/// Every behaviour a store must have, run on `fixture`.
async fn behaves(fixture: Fixture) {
    let runtime = Runtime::start(fixture.config(1, ""), Registry::with_builtins())
        .await
        .expect("the config activates");

    // Migrations ran once, in order.
    let applied =
        json!([{"version": 1, "file": "0001_notes.sql"}, {"version": 2, "file": "0002_tags.sql"}]);
    assert_eq!(execute(&runtime, "migrations", json!({})).await, applied);
    assert_eq!(
        store_status(&runtime).await["migrations"]["appliedAtStart"],
        json!(["0001_notes.sql", "0002_tags.sql"])
    );

    // A query's row, its types, and a parameter bound, not interpolated.
    let hostile = "x'); DROP TABLE notes; --";
    let created = execute(
        &runtime,
        "create",
        json!({"title": hostile, "score": 2.5, "done": true}),
    )
    .await;
    assert_eq!(
        created,
        json!({"id": 1, "title": hostile, "body": null, "score": 2.5, "done": true})
    );
    // A path's "1" finds the integer key on both databases.
    let got = execute(&runtime, "get", json!({"id": "1"})).await;
    assert_eq!(got, created);
    assert_eq!(titles(&runtime).await, [hostile]);
    let missing = execute(&runtime, "get", json!({"id": 99})).await;
    assert_eq!(missing["status"], 404, "{missing}");
    assert_eq!(missing["body"], json!({"error": "not found"}));

    // Statements: rows affected.
    let renamed = execute(&runtime, "rename", json!({"from": hostile, "to": "first"})).await;
    assert_eq!(renamed["rowsAffected"], 1);
    let none = execute(&runtime, "rename", json!({"from": "nothing", "to": "x"})).await;
    assert_eq!(none["rowsAffected"], 0);

    // A transaction commits both rows.
    execute(&runtime, "pair", json!({"title": "pair"})).await;
    assert_eq!(titles(&runtime).await, ["first", "pair one", "pair two"]);
    // A failing step rolls the first row back.
    let failed = runtime
        .execute("failing_pair", json!({"title": "lost"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, ExecuteError::StepFailed { step, .. } if step == "second"),
        "{failed}"
    );
    assert_eq!(titles(&runtime).await, ["first", "pair one", "pair two"]);
    // So does the pipeline's time limit.
    let slow = runtime
        .execute("slow", json!({"title": "too slow"}))
        .await
        .unwrap_err();
    assert!(matches!(slow, ExecuteError::TimedOut { .. }), "{slow}");
    assert_eq!(titles(&runtime).await, ["first", "pair one", "pair two"]);
    // And the connections it used came back: the next transaction goes through.
    execute(&runtime, "pair", json!({"title": "again"})).await;
    assert_eq!(titles(&runtime).await.len(), 5);

    let deleted = execute(&runtime, "delete", json!({"id": 1})).await;
    assert_eq!(deleted["rowsAffected"], 1);
    assert_eq!(
        titles(&runtime).await,
        ["pair one", "pair two", "again one", "again two"]
    );

    // A failing migration: its first statement ran, its second failed; both are undone, the
    // reload is rolled back and the old engine serves on.
    fixture.migration(
        "0003_bad.sql",
        "ALTER TABLE notes ADD COLUMN extra TEXT;\nINSERT INTO no_such_table VALUES (1);",
    );
    let outcome = reload(&runtime, fixture.config(2, "")).await;
    let ReloadOutcome::RolledBack { error } = &outcome else {
        panic!("a failing migration must roll the reload back, got {outcome:?}");
    };
    assert!(
        error.contains("migration \"0003_bad.sql\" failed"),
        "{error}"
    );
    assert_eq!(
        execute(&runtime, "version", json!({})).await,
        json!({"version": 1})
    );
    let columns = execute(&runtime, "columns", json!({})).await;
    let names: Vec<&str> = columns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["id", "title", "body", "score", "done"],
        "the failed migration left its column"
    );
    assert_eq!(execute(&runtime, "migrations", json!({})).await, applied);
    assert_eq!(titles(&runtime).await.len(), 4);
    std::fs::remove_file(fixture.migrations().join("0003_bad.sql")).unwrap();

    // An applied migration edited: refused, naming its file.
    fixture.migration(
        "0002_tags.sql",
        "CREATE TABLE tags (note_id BIGINT, tag TEXT, extra TEXT);",
    );
    let outcome = reload(&runtime, fixture.config(3, "")).await;
    let ReloadOutcome::RolledBack { error } = &outcome else {
        panic!("an edited migration must roll the reload back, got {outcome:?}");
    };
    assert!(
        error.contains("migration \"0002_tags.sql\"")
            && error.contains("has changed since it was applied"),
        "{error}"
    );
    assert_eq!(
        execute(&runtime, "version", json!({})).await,
        json!({"version": 1})
    );

    // Put back, a new store config starts (nothing left to migrate) and serves.
    fixture.migration("0002_tags.sql", "CREATE TABLE tags (note_id BIGINT NOT NULL REFERENCES notes (id), tag TEXT NOT NULL);\nCREATE INDEX tags_by_note ON tags (note_id);");
    let outcome = reload(&runtime, fixture.config(4, ", maxConnections: 3")).await;
    assert!(
        matches!(outcome, ReloadOutcome::Activated { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        execute(&runtime, "version", json!({})).await,
        json!({"version": 4})
    );
    assert_eq!(
        store_status(&runtime).await["migrations"]["appliedAtStart"],
        json!([])
    );
    assert_eq!(execute(&runtime, "migrations", json!({})).await, applied);
    assert_eq!(titles(&runtime).await.len(), 4);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_behaves() {
    behaves(Fixture::new(Kind::Sqlite, "behaves").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_behaves() {
    let Some(server) = common::Postgres::start("the PostgreSQL storage tests") else {
        return;
    };
    behaves(Fixture::new(Kind::Postgres(server), "behaves").await).await;
}
