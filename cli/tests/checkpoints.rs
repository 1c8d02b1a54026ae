//! Plugin checkpoints, end to end: the `swapvisor` binary with a state folder, an in-process
//! counter and a Python process plugin that checkpoint after every change, crashed, reverted on
//! probation, and the whole process killed and started again; and a plugin that never
//! checkpoints, which behaves as it always has; and the Rust counter served as a process, whose
//! checkpoints `serve` sends. The measurement (crashes and reverts under load) is in
//! `checkpoints_load.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use common::{Swapvisor, TempConfig, get, request_with};

fn faulty_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faulty_plugin.py")
}

/// A config serving `/count` (an increment of `hits`) and `/crash` (`hits`'s `crash_op`),
/// with `entry` as its one plugin, on probation for 60 s after each per-plugin reload.
fn config(entry: &str, crash_op: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
plugins:
  - {entry}
pipelines:
  count:
    trigger: {{ type: http, config: {{ server: web, path: /count }} }}
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment }} }}
      - {{ name: respond, type: step.json_response, config: {{ body: {{ count: "{{{{ bump.count }}}}" }} }} }}
  crash:
    trigger: {{ type: http, config: {{ server: web, path: /crash }} }}
    steps:
      - {{ name: crash, type: step.plugin_call, config: {{ plugin: hits, op: {crash_op} }} }}
runtime: {{ reload: {{ probation: 60s }} }}
"#
    )
}

/// `swapvisor run` of `config` with its admin API, keeping its state in `state` (or none).
fn run(config: &TempConfig, state: Option<&Path>) -> (Swapvisor, String, String) {
    let state = state.map_or("off".to_owned(), |dir| dir.display().to_string());
    let mut swapvisor = Swapvisor::start_with_env(
        &["run", config.as_str(), "--admin", "127.0.0.1:0"],
        &[("SWAPVISOR_STATE_DIR", &state)],
    );
    let (web, admin) = swapvisor.wait_until_up_with_admin("web");
    (swapvisor, web, admin)
}

async fn count(web: &str) -> i64 {
    let (code, body) = get(&format!("{web}/count")).await;
    assert_eq!(code, 200, "{body}");
    body["count"].as_i64().unwrap_or_else(|| panic!("{body}"))
}

async fn crash(web: &str) {
    let (code, body) = get(&format!("{web}/crash")).await;
    assert_ne!(code, 200, "the crash call fails: {body}");
}

/// The status of the plugin `hits`, as the admin API shows it.
async fn hits(admin: &str) -> Value {
    let (_, status) = get(&format!("{admin}/api/v1/admin/engine/status")).await;
    status["plugins"][0].clone()
}

/// Waits (up to 20 s) until `check` holds for `hits`'s status, and returns it.
async fn wait_for_hits(admin: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{admin}/api/v1/admin/plugins/hits");
    common::wait_for_json(&url, what, Duration::from_secs(20), check).await
}

/// Reloads `hits` alone to `entry` through the admin API, and checks that it activated.
async fn reload(admin: &str, entry: &str, generation: u64) {
    let url = format!("{admin}/api/v1/admin/plugins/hits/reload");
    let (code, body) = request_with("POST", &url, &[], entry.to_owned())
        .await
        .unwrap();
    assert_eq!(
        (code, body),
        (
            200,
            json!({"status": "activated", "generation": generation})
        )
    );
}

fn running(generation: u64) -> impl Fn(&Value) -> bool {
    move |status| status["state"] == "running" && status["generation"] == generation
}

/// Waits until the latest checkpoint is on disk: what a kill of the process leaves.
async fn wait_until_saved(admin: &str) -> Value {
    wait_for_hits(admin, "the latest checkpoint to be on disk", |status| {
        let checkpoint = &status["checkpoint"];
        checkpoint["saved"].is_u64() && checkpoint["saved"] == checkpoint["latest"]["sequence"]
    })
    .await
}

#[tokio::test]
async fn an_in_process_counter_that_checkpoints_keeps_its_count_across_crashes_a_revert_and_a_kill()
{
    let entry = "{ name: hits, type: counter, config: { checkpoint: true }, restart: { maxRestarts: 5, within: 60s, backoff: { initial: 10ms, max: 20ms } } }";
    let config = TempConfig::new(&config(entry, "crash"));
    let state = config.dir.path().join("state");
    let (mut swapvisor, web, admin) = run(&config, Some(&state));
    for expected in 1..=3 {
        assert_eq!(count(&web).await, expected);
    }

    // A crash restart continues from the last count answered (the next call waits for it).
    crash(&web).await;
    assert_eq!(count(&web).await, 4);
    let status = hits(&admin).await;
    assert_eq!(status["restarts"], 1);
    assert_eq!(status["checkpoint"]["imported"]["cause"], "restart");
    assert_eq!(status["checkpoint"]["imported"]["kind"], "counter");
    assert_eq!(status["checkpoint"]["imported"]["sequence"], 3);

    // A per-plugin reload hands the count over, as it always has; its crash loop on probation
    // (a restart, then one too many) reverts it, and the reverted instance continues too.
    let fragile = "{ name: hits, type: counter, config: { checkpoint: true, start: 1000 }, restart: { maxRestarts: 2, within: 60s, backoff: { initial: 10ms, max: 20ms } } }";
    reload(&admin, fragile, 2).await;
    assert_eq!(count(&web).await, 5);
    crash(&web).await;
    assert_eq!(
        count(&web).await,
        6,
        "restarted within probation, from its checkpoint"
    );
    crash(&web).await;
    let reverted = wait_for_hits(&admin, "the revert", running(3)).await;
    assert_eq!(reverted["checkpoint"]["imported"]["cause"], "reload");
    assert_eq!(
        count(&web).await,
        7,
        "the reverted instance continues the count"
    );

    // Killed outright and started again: the count continues from the file.
    let saved = wait_until_saved(&admin).await;
    let sequence = saved["checkpoint"]["latest"]["sequence"].clone();
    let file = state.join("checkpoints/hits.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    swapvisor.child.kill().unwrap();
    swapvisor.child.wait().unwrap();
    drop(swapvisor);
    let (mut swapvisor, web, admin) = run(&config, Some(&state));
    swapvisor.wait_for_line(
        "found the plugin's latest checkpoint",
        Duration::from_secs(10),
    );
    assert_eq!(count(&web).await, 8);
    let status = hits(&admin).await;
    assert_eq!(status["checkpoint"]["imported"]["cause"], "start");
    assert_eq!(status["checkpoint"]["imported"]["sequence"], sequence);
    assert_eq!(
        (status["generation"].clone(), status["restarts"].clone()),
        (json!(1), json!(0))
    );
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    let metrics = metrics.as_str().unwrap();
    common::assert_has_lines(
        metrics,
        [
            "swapvisor_plugin_checkpoints_total{plugin=\"hits\"} 1",
            "swapvisor_plugin_checkpoints_refused_total{plugin=\"hits\"} 0",
        ],
    );
    swapvisor.signal("TERM");
    assert_eq!(swapvisor.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn a_python_process_plugin_that_checkpoints_keeps_its_count_across_a_crash_and_a_revert() {
    let faulty = faulty_plugin();
    let faulty = faulty.to_str().unwrap();
    let entry = |flags: &str| {
        format!(
            "{{ name: hits, type: process, config: {{ command: [{faulty:?}{flags}], callTimeout: 2s, settings: {{ checkpoint: true }} }}, restart: {{ maxRestarts: 3, within: 60s, backoff: {{ initial: 10ms, max: 20ms }} }} }}"
        )
    };
    let config = TempConfig::new(&config(&entry(""), "abort"));
    let state = config.dir.path().join("state");
    let (mut swapvisor, web, admin) = run(&config, Some(&state));
    assert_eq!(count(&web).await, 1);
    assert_eq!(count(&web).await, 2);
    let first = hits(&admin).await;
    assert_eq!(first["checkpoint"]["latest"]["sequence"], 2);
    assert_eq!(first["checkpoint"]["latest"]["code"], first["code"]);

    // The process aborts; the new one is given the count through state/import.
    crash(&web).await;
    let restarted = wait_for_hits(&admin, "the restart", |status| {
        status["restarts"] == 1 && status["state"] == "running" && status["pid"] != first["pid"]
    })
    .await;
    assert_eq!(restarted["checkpoint"]["imported"]["cause"], "restart");
    assert_eq!(count(&web).await, 3);

    // New code that crashes 50 ms after its start, on probation: it takes the count, crashes
    // in a loop, and the previous code is put back with the count.
    reload(&admin, &entry(", \"--crash-after-start\""), 2).await;
    let reverted = wait_for_hits(&admin, "the revert", running(3)).await;
    assert_eq!(reverted["checkpoint"]["imported"]["cause"], "reload");
    assert_eq!(
        count(&web).await,
        4,
        "the reverted process continues the count"
    );
    let pid = hits(&admin).await["pid"].as_u64().unwrap();
    swapvisor.signal("TERM");
    assert_eq!(swapvisor.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the plugin process went with swapvisor"
    );
}

#[tokio::test]
async fn a_plugin_that_never_checkpoints_begins_afresh_after_a_crash_and_a_restart_as_before() {
    let entry = "{ name: hits, type: counter, restart: { backoff: { initial: 10ms, max: 20ms } } }";
    let config = TempConfig::new(&config(entry, "crash"));
    let state = config.dir.path().join("state");
    let (swapvisor, web, admin) = run(&config, Some(&state));
    assert_eq!(count(&web).await, 1);
    assert_eq!(count(&web).await, 2);
    crash(&web).await;
    assert_eq!(
        count(&web).await,
        1,
        "a crash restart begins from the factory"
    );
    // A per-plugin reload still hands the count over.
    reload(
        &admin,
        "{ name: hits, type: counter, config: { start: 5 } }",
        2,
    )
    .await;
    assert_eq!(count(&web).await, 2);
    let status = hits(&admin).await;
    assert!(status.get("checkpoint").is_none(), "{status:#}");
    drop(swapvisor);
    let (mut swapvisor, web, _admin) = run(&config, Some(&state));
    assert_eq!(count(&web).await, 1, "a new process begins afresh");
    assert!(
        !state.join("checkpoints").exists(),
        "no checkpoint was written"
    );
    swapvisor.signal("TERM");
    assert_eq!(swapvisor.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn a_rust_plugin_served_as_a_process_checkpoints_through_serve() {
    let command = env!("CARGO_BIN_EXE_swapvisor-counter-plugin");
    let yaml = format!(
        "plugins:\n  - {{ name: hits, type: process, config: {{ command: [{command:?}], settings: {{ checkpoint: true }} }}, restart: {{ backoff: {{ initial: 10ms, max: 20ms }} }} }}\npipelines: {{}}\n"
    );
    let runtime = swapvisor::Runtime::start(
        swapvisor::Config::parse(yaml.as_bytes()).unwrap(),
        swapvisor::Registry::with_builtins(),
    )
    .await
    .unwrap();
    let hits = runtime.plugin("hits").unwrap();
    for _ in 0..3 {
        hits.call("increment", Value::Null).await.unwrap();
    }
    let before = hits.status();
    let latest = before.checkpoint.as_ref().unwrap().latest.clone().unwrap();
    assert_eq!((latest.sequence, latest.code), (3, before.code.clone()));
    // The served counter panics: `serve` answers with an error and exits, and the restarted
    // process is given the count in state/import.
    assert!(hits.call("crash", Value::Null).await.is_err());
    let restarted = common::wait_for_status(&runtime, "the restart", |status| {
        let hits = &status.plugins[0];
        hits.restarts == 1 && hits.state == swapvisor::plugin::PluginState::Running
    })
    .await;
    let imported = restarted.plugins[0]
        .checkpoint
        .clone()
        .unwrap()
        .imported
        .unwrap();
    assert_eq!(imported.checkpoint.sequence, 3);
    assert_eq!(
        hits.call("increment", Value::Null).await.unwrap(),
        json!({"count": 4})
    );
    runtime.shutdown().await.unwrap();
}
