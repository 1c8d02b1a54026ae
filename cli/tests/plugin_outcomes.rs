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

    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    let metrics = metrics.as_str().unwrap();
    common::assert_has_lines(
        metrics,
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

    let port = admin.rsplit(':').next().unwrap();
    let (code, out, err) = swapvisor(&["status", "--admin", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["plugins"][0]["lastReload"]["outcome"], "rejected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_on_probation_is_counted_as_an_escalation_and_reverted() {
    let counter = |start: u32| {
        format!(
            "{{ name: hits, type: counter, config: {{ start: {start} }}, restart: {{ maxRestarts: 0 }} }}"
        )
    };
    let config = TempConfig::new(&format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
plugins:
  - {}
pipelines:
  crash:
    trigger: {{ type: http, config: {{ server: web, method: POST, path: /crash }} }}
    steps:
      - {{ name: c, type: step.plugin_call, config: {{ plugin: hits, op: crash }} }}
runtime: {{ reload: {{ probation: 60s }} }}
"#,
        counter(0)
    ));
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
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    let metrics = metrics.as_str().unwrap();
    common::assert_has_lines(
        metrics,
        [
            "swapvisor_plugin_escalations_total{plugin=\"hits\"} 1",
            "swapvisor_plugin_reloads_total{plugin=\"hits\",outcome=\"reverted\"} 1",
        ],
    );
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
