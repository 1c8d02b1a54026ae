//! Plugin outcomes where an engine's are: each plugin's own reload history, shown by
//! `GET /api/v1/admin/plugins` and `/plugins/{name}`, counted in `/metrics` by plugin and
//! outcome, and in `swapvisor status`.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{Swapvisor, TempConfig, client, get, request, swapvisor};

const PLUGIN: &str = env!("CARGO_BIN_EXE_swapvisor-counter-plugin");

fn entry(command: &str, extra: &str) -> String {
    format!("{{ name: hits, type: process, config: {{ command: [{command:?}]{extra} }} }}")
}

async fn reload(admin: &str, body: &str) -> (u16, String) {
    let (code, answer) = request(
        &client(),
        "POST",
        &format!("{admin}/api/v1/admin/plugins/hits/reload"),
        body,
    )
    .await
    .unwrap();
    (
        code,
        answer["status"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `/metrics` of the admin API at `admin`, as text.
async fn metrics_of(admin: &str) -> String {
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    metrics.as_str().unwrap().to_owned()
}

/// What `swapvisor status` prints for the admin API at `admin`.
fn status_by_cli(admin: &str) -> Value {
    let port = admin.rsplit(':').next().unwrap();
    let (code, out, err) = swapvisor(&["status", "--admin", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_plugin_outcome_is_in_its_history_its_status_and_metrics() {
    let config = TempConfig::new(&format!(
        "modules:\n  - {{ name: web, type: http.server, config: {{ address: \"127.0.0.1:0\" }} }}\nplugins:\n  - {}\n",
        entry(PLUGIN, "")
    ));
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "127.0.0.1:0"]);
    let (_, admin) = process.wait_until_up_with_admin("web");

    // Activated: a changed entry.
    assert_eq!(
        reload(&admin, &entry(PLUGIN, ", callTimeout: 3s")).await,
        (200, "activated".into())
    );
    // Rolled back: an executable that exits instead of answering `initialize`.
    let (code, status) = reload(&admin, &entry("/bin/false", "")).await;
    assert_eq!((code, status.as_str()), (500, "rolled_back"));
    // Rejected: an entry that does not validate, and a body that is not an entry.
    let (code, status) = reload(&admin, "{ name: hits, type: no.such.kind }").await;
    assert_eq!((code, status.as_str()), (422, "build_failed"));
    let (code, status) = reload(&admin, "{{{").await;
    assert_eq!((code, status.as_str()), (400, "build_failed"));

    let (code, hits) = get(&format!("{admin}/api/v1/admin/plugins/hits")).await;
    assert_eq!(code, 200, "{hits}");
    // One field of every reload in the history, oldest first.
    let each = |field: &str| -> Vec<String> {
        let history = hits["history"].as_array().unwrap();
        history
            .iter()
            .map(|r| r[field].as_str().unwrap().to_owned())
            .collect()
    };
    let outcomes = [
        "activated",
        "activated",
        "rolled_back",
        "rejected",
        "rejected",
    ];
    assert_eq!(each("outcome"), outcomes);
    assert_eq!(
        each("origin"),
        ["initial", "admin", "admin", "admin", "admin"]
    );
    assert!(
        hits["history"][2]["error"]
            .as_str()
            .unwrap()
            .contains("hits"),
        "{hits}"
    );
    assert_eq!(hits["lastReload"]["outcome"], "rejected");
    assert_eq!(
        hits["generation"], 2,
        "the rolled-back and rejected ones changed nothing"
    );
    assert_eq!(
        hits["reloads"],
        serde_json::json!({"activated": 2, "rejected": 2, "rolled_back": 1})
    );

    let (code, all) = get(&format!("{admin}/api/v1/admin/plugins")).await;
    assert_eq!(code, 200);
    assert_eq!(all["plugins"][0]["name"], "hits");
    assert_eq!(all["plugins"][0]["lastReload"], hits["lastReload"]);
    let (code, missing) = get(&format!("{admin}/api/v1/admin/plugins/nope")).await;
    assert_eq!((code, missing["status"].as_str()), (404, Some("not_found")));

    common::assert_has_lines(
        &metrics_of(&admin).await,
        [
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"activated\"} 2",
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"rejected\"} 2",
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"rolled_back\"} 1",
            "swapvisor_plugin_up{plugin=\"hits\"} 1",
            "swapvisor_plugin_state{plugin=\"hits\",state=\"failed\"} 0",
            "swapvisor_plugin_state{plugin=\"hits\",state=\"restarting\"} 0",
            "swapvisor_plugin_state{plugin=\"hits\",state=\"running\"} 1",
            "swapvisor_plugin_state{plugin=\"hits\",state=\"starting\"} 0",
            "swapvisor_plugin_state{plugin=\"hits\",state=\"stopped\"} 0",
        ],
    );

    let status = status_by_cli(&admin);
    assert_eq!(status["plugins"][0]["lastReload"]["outcome"], "rejected");
}

/// A config with a server `web`, the one plugin `entry`, `pipeline` (its YAML, at the indent of
/// a pipeline's name), and probation of 60 s after each reload.
fn on_probation(entry: &str, pipeline: &str) -> TempConfig {
    TempConfig::new(&format!(
        "modules:\n  - {{ name: web, type: http.server, config: {{ address: \"127.0.0.1:0\" }} }}\nplugins:\n  - {entry}\npipelines:\n  {pipeline}\nruntime: {{ reload: {{ probation: 60s }} }}\n"
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_on_probation_is_counted_as_an_escalation_and_reverted() {
    let counter = |start: u32| {
        format!(
            "{{ name: hits, type: counter, config: {{ start: {start} }}, restart: {{ maxRestarts: 0 }} }}"
        )
    };
    let config = on_probation(
        &counter(0),
        "crash:\n    trigger: { type: http, config: { server: web, method: POST, path: /crash } }\n    steps:\n      - { name: c, type: step.plugin_call, config: { plugin: hits, op: crash } }",
    );
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "127.0.0.1:0"]);
    let (web, admin) = process.wait_until_up_with_admin("web");
    // A per-plugin reload: on probation for a minute.
    assert_eq!(
        reload(&admin, &counter(100)).await,
        (200, "activated".into())
    );
    // Its crash is past the intensity at once: escalated to its own Supervisor, which reverts.
    let _ = request(&client(), "POST", &format!("{web}/crash"), "").await;
    let url = format!("{admin}/api/v1/admin/plugins/hits");
    let hits = common::wait_for_json(&url, "the revert", Duration::from_secs(10), |h| {
        h["lastReload"]["outcome"] == "reverted" && h["state"] == "running"
    })
    .await;
    assert_eq!(hits["escalations"], 1, "{hits}");
    assert!(
        hits["lastEscalation"]
            .as_str()
            .unwrap()
            .starts_with("plugin \"hits\" exceeded its restart intensity"),
        "{hits}"
    );
    assert_eq!(hits["history"][2]["origin"], "revert");
    common::assert_has_lines(
        &metrics_of(&admin).await,
        [
            "swapvisor_plugin_escalations_total{plugin=\"hits\"} 1",
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"reverted\"} 1",
        ],
    );
}

/// faulty_plugin.py with a line of its own (so a code hash of its own), made executable.
fn version_of_plugin(dir: &std::path::Path, tag: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faulty_plugin.py"),
    )
    .unwrap();
    let path = dir.join(format!("plugin-{tag}.py"));
    std::fs::write(&path, format!("{source}\n# {tag}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The copies in a code store: files named by a SHA-256.
fn copies(store: &std::path::Path) -> usize {
    std::fs::read_dir(store).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .count()
    })
}

/// Waits (bounded) until the store holds `expected` copies: pruning follows each start.
async fn wait_for_copies(store: &std::path::Path, expected: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while copies(store) != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store holds {} copies, not {expected}",
            copies(store)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_plugin_through_every_outcome_keeps_two_copies_of_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let process_entry = |command: &[&str], extra: &str| {
        format!("{{ name: hits, type: process, config: {{ command: {command:?}{extra} }} }}")
    };
    let first = version_of_plugin(dir.path(), "0");
    let config = on_probation(
        &process_entry(&[&first], ", stepTypes: [counter.add]"),
        "add:\n    trigger: { type: http, config: { server: web, path: /add } }\n    steps:\n      - { name: add, type: counter.add }\n      - { name: respond, type: step.json_response, config: { body: { count: \"{{ add.count }}\" } } }",
    );
    let store_env = store.display().to_string();
    let mut process = Swapvisor::start_with_env(
        &["run", config.as_str(), "--admin", "127.0.0.1:0"],
        &[("SWAPVISOR_CODE_DIR", &store_env)],
    );
    let (web, admin) = process.wait_until_up_with_admin("web");
    let (code, _) = get(&format!("{web}/add")).await;
    assert_eq!(code, 200);

    // Ten swaps to new code that declares no step types: each is checked against the live
    // config's `counter.add` once it has started, and activates.
    for version in 1..=10 {
        let next = version_of_plugin(dir.path(), &version.to_string());
        assert_eq!(
            reload(&admin, &process_entry(&[&next], "")).await,
            (200, "activated".into()),
            "swap {version}"
        );
    }
    // Exactly the live code and the one before it are kept.
    wait_for_copies(&store, 2).await;

    // Rolled back, with its real cause first: new code that exits at start, while the live
    // config uses a step type only a start could have told it offers.
    let exits = version_of_plugin(dir.path(), "exits");
    let (code, answer) = request(
        &client(),
        "POST",
        &format!("{admin}/api/v1/admin/plugins/hits/reload"),
        &process_entry(&[&exits, "--exit-at-start"], ""),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, answer["status"].as_str()),
        (500, Some("rolled_back"))
    );
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("plugin \"hits\" failed to start") && !error.contains("would remove"),
        "{error}"
    );
    // Rejected, with its real cause first: an executable that is not there.
    let (code, answer) = request(
        &client(),
        "POST",
        &format!("{admin}/api/v1/admin/plugins/hits/reload"),
        &process_entry(&["/no/such/plugin"], ""),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, answer["status"].as_str()),
        (422, Some("build_failed"))
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("cannot read the executable /no/such/plugin"),
        "{answer}"
    );
    let (_, before) = get(&format!("{admin}/api/v1/admin/plugins/hits")).await;

    // Reverted: code that crash-loops on probation; the previous code serves again.
    let crashes = version_of_plugin(dir.path(), "crashes");
    assert_eq!(
        reload(
            &admin,
            &process_entry(&[&crashes, "--crash-after-start"], "")
        )
        .await,
        (200, "activated".into())
    );
    let url = format!("{admin}/api/v1/admin/plugins/hits");
    let hits = common::wait_for_json(&url, "the revert", Duration::from_secs(20), |h| {
        h["lastReload"]["outcome"] == "reverted" && h["state"] == "running"
    })
    .await;
    assert_eq!(hits["code"], before["code"], "the previous code serves");
    assert_eq!(hits["escalations"], 1, "{hits}");
    assert!(hits["pid"].as_u64().is_some(), "{hits}");
    assert_eq!(hits["version"], "1.0.0");
    // The crash is the last error, dated and past: the reverted code serves.
    assert!(
        hits["lastError"].as_str().unwrap().contains("exited"),
        "{hits}"
    );
    assert!(
        hits["lastErrorAt"].as_str().unwrap().ends_with('Z'),
        "{hits}"
    );
    assert_eq!(hits["lastErrorPast"], true, "{hits}");
    let outcomes: Vec<&str> = hits["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    let mut expected = vec!["activated"; 11];
    expected.extend(["rolled_back", "rejected", "activated", "reverted"]);
    assert_eq!(outcomes, expected);
    assert_eq!(
        hits["reloads"],
        serde_json::json!({"activated": 12, "rejected": 1, "reverted": 1, "rolled_back": 1})
    );
    // The revert's start kept the code it left as the previous one: still two copies.
    wait_for_copies(&store, 2).await;

    common::assert_has_lines(
        &metrics_of(&admin).await,
        [
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"activated\"} 12",
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"rejected\"} 1",
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"rolled_back\"} 1",
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"reverted\"} 1",
            "swapvisor_plugin_escalations_total{plugin=\"hits\"} 1",
        ],
    );
    let status = status_by_cli(&admin);
    assert_eq!(status["plugins"][0]["lastReload"]["outcome"], "reverted");
    assert_eq!(status["plugins"][0]["escalations"], 1);
    // The reverted code serves the live config's step.
    let (code, body) = get(&format!("{web}/add")).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_plugin_its_policy_does_not_restart_is_down_in_metrics() {
    let config = TempConfig::new(
        r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
plugins:
  - { name: hits, type: counter, config: { start: 0 }, restart: { policy: temporary } }
pipelines:
  crash:
    trigger: { type: http, config: { server: web, method: POST, path: /crash } }
    steps:
      - { name: c, type: step.plugin_call, config: { plugin: hits, op: crash } }
"#,
    );
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "127.0.0.1:0"]);
    let (web, admin) = process.wait_until_up_with_admin("web");
    let _ = request(&client(), "POST", &format!("{web}/crash"), "").await;
    let url = format!("{admin}/api/v1/admin/plugins/hits");
    common::wait_for_json(&url, "the crash", Duration::from_secs(10), |h| {
        h["state"] == "failed"
    })
    .await;
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    common::assert_has_lines(
        metrics.as_str().unwrap(),
        [
            "swapvisor_plugin_up{plugin=\"hits\"} 0",
            "swapvisor_plugin_state{plugin=\"hits\",state=\"failed\"} 1",
            "swapvisor_plugin_state{plugin=\"hits\",state=\"running\"} 0",
            "swapvisor_plugin_escalations_total{plugin=\"hits\"} 0",
        ],
    );
}
