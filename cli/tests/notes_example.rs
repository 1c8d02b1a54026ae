//! `examples/notes.yaml`, as the README runs it: the `swapvisor` binary serving the notes API
//! over a SQLite file, each route answering as the example's comments say, the migration
//! applied at the first start and not again after a restart, and a validate that creates no
//! database.

mod common;

use std::time::Duration;

use serde_json::json;

use common::{Swapvisor, TempConfig, get, repository, request_full, swapvisor_with_env};

/// The example with its server on an ephemeral port.
fn example() -> TempConfig {
    let text = std::fs::read_to_string(repository().join("examples/notes.yaml")).unwrap();
    assert!(text.contains("127.0.0.1:8080"));
    TempConfig::new(&text.replace("127.0.0.1:8080", "127.0.0.1:0"))
}

#[test]
fn the_example_validates_and_touches_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    let (code, stdout, stderr) = swapvisor_with_env(
        &["validate", "examples/notes.yaml"],
        &[("NOTES_DB", db.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!db.exists(), "validate created the database");
}

#[tokio::test]
async fn the_notes_api_creates_lists_gets_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    let env = [("NOTES_DB", db.to_str().unwrap())];
    let config = example();
    let mut process = Swapvisor::start_with_env(&["run", config.as_str(), "--admin", "off"], &env);
    let base = process.wait_until_up("web");
    assert!(
        process.has_seen("migrations applied"),
        "the first start migrates"
    );
    let notes = format!("{base}/notes");

    let (status, _, created) = request_full(
        "POST",
        &notes,
        &[],
        r#"{"title":"tea","body":"green, 80C"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (&created["id"], &created["title"], &created["body"]),
        (&json!(1), &json!("tea"), &json!("green, 80C"))
    );
    assert!(created["created_at"].is_string(), "{created}");
    let (status, _, refused) = request_full("POST", &notes, &[], r#"{"body":"no title"}"#)
        .await
        .unwrap();
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["errors"][0]["message"],
        "\"title\" is a required property"
    );
    let (status, listed) = get(&notes).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["title"], "tea");
    let (status, got) = get(&format!("{notes}/1")).await;
    assert_eq!((status, &got), (200, &created));
    let (status, missing) = get(&format!("{notes}/2")).await;
    assert_eq!((status, &missing), (404, &json!({"error": "not found"})));
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(30)), Some(0));

    // A restart finds the note, and applies no migration again.
    let mut process = Swapvisor::start_with_env(&["run", config.as_str(), "--admin", "off"], &env);
    let base = process.wait_until_up("web");
    let notes = format!("{base}/notes");
    let (status, got) = get(&format!("{notes}/1")).await;
    assert_eq!((status, &got), (200, &created));
    let (status, _, deleted) = request_full("DELETE", &format!("{notes}/1"), &[], "")
        .await
        .unwrap();
    assert_eq!((status, &deleted), (200, &json!({"deleted": 1})));
    let (status, _, again) = request_full("DELETE", &format!("{notes}/1"), &[], "")
        .await
        .unwrap();
    assert_eq!((status, &again), (404, &json!({"error": "not found"})));
    assert!(
        !process.has_seen("migrations applied"),
        "a restart migrated again"
    );
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(30)), Some(0));
}
