//! End-to-end tests of the `swapvisor` binary: run, validate and types.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::{Swapvisor, TempConfig, get, swapvisor};

const HELLO_EPHEMERAL: &str = r#"
modules:
  - name: web
    type: http.server
    config: { address: "127.0.0.1:0" }
pipelines:
  hello:
    trigger: { type: http, config: { server: web, method: GET, path: /hello } }
    steps:
      - name: greet
        type: step.set
        config: { values: { message: "hello {{ request.query.name }}" } }
      - name: respond
        type: step.json_response
        config: { status: 200, body: { message: "{{ greet.message }}", version: "v1" } }
"#;

/// The step types `Registry::with_builtins` registers, sorted.
const BUILTIN_STEP_TYPES: [&str; 16] = [
    "step.db_exec",
    "step.db_query",
    "step.delay",
    "step.fail",
    "step.http_call",
    "step.json_response",
    "step.jwt",
    "step.log",
    "step.plugin_call",
    "step.proxy",
    "step.rate_limit",
    "step.set",
    "step.static",
    "step.switch",
    "step.transform",
    "step.validate",
];

#[tokio::test]
async fn run_serves_real_http_and_exits_cleanly_on_sigterm() {
    let config = TempConfig::new(HELLO_EPHEMERAL);
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "off"]);
    let base = process.wait_until_up("web");
    assert_eq!(
        get(&format!("{base}/hello?name=ada")).await,
        (200, json!({"message": "hello ada", "version": "v1"}))
    );
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(15)), Some(0));
    let address = base.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "the port must be free after exit"
    );
}

#[test]
fn validate_prints_every_error_with_its_place_and_exits_1() {
    let config = TempConfig::new(
        r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
  - { name: db, type: bad.type, dependsOn: [cache] }
  - { name: cache, type: fault.inject, config: { failOn: stop }, dependsOn: [db] }
  - { name: web, type: fault.inject, config: { failOn: stop } }
"#,
    );
    let (code, stdout, stderr) = swapvisor(&["validate", config.as_str()]);
    assert_eq!(code, 1, "stderr: {stderr}");
    let verdict: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(verdict["status"], "build_failed");
    let error = verdict["error"].as_str().unwrap();
    for expected in [
        r#"modules[3] (name "web").name: duplicate module name "web" (first used at modules[0])"#,
        r#"modules[1] (name "db").dependsOn: dependency cycle: db -> cache -> db"#,
        r#"modules[1] (name "db").type: unknown module type "bad.type" (registered: fault.inject, http.server, http.upstream, storage.postgres, storage.sqlite)"#,
    ] {
        assert!(error.contains(expected), "missing {expected:?} in {error}");
    }
    assert_eq!(
        verdict.as_object().unwrap().len(),
        2,
        "exactly status and error: {verdict}"
    );
}

#[test]
fn validate_a_good_config_prints_the_types_it_uses() {
    let (code, stdout, _) = swapvisor(&["validate", "examples/hello.yaml"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap(),
        json!({
            "status": "build_ok",
            "moduleTypes": ["fault.inject", "http.server", "http.upstream", "storage.postgres", "storage.sqlite"],
            "stepTypes": BUILTIN_STEP_TYPES,
            "triggerTypes": ["http", "schedule"],
            "usedTypes": {
                "moduleTypes": ["http.server"],
                "stepTypes": ["step.json_response", "step.set"],
                "triggerTypes": ["http"],
            }
        })
    );
}

#[test]
fn validate_takes_the_step_types_a_process_plugin_declares() {
    let (code, stdout, stderr) = swapvisor(&["validate", "examples/process.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    let verdict: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(verdict["status"], "build_ok");
    assert_eq!(
        verdict["usedTypes"]["stepTypes"],
        json!(["counter.add", "step.json_response", "step.plugin_call"])
    );
    // What the candidate offers: the built-in steps and the plugin's.
    assert_eq!(
        verdict["stepTypes"],
        json!(
            ["counter.add"]
                .into_iter()
                .chain(BUILTIN_STEP_TYPES)
                .collect::<Vec<_>>()
        )
    );
}

#[test]
fn validate_binds_nothing_and_a_missing_file_is_a_clear_error() {
    // Held from the start: releasing a free port and binding it again races with every other
    // test that binds one.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let config =
        TempConfig::new(&HELLO_EPHEMERAL.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")));
    let (code, stdout, _) = swapvisor(&["validate", config.as_str()]);
    assert_eq!(
        code, 0,
        "validate must not try to bind the port we hold: {stdout}"
    );
    drop(holder);

    let (code, stdout, _) = swapvisor(&["validate", "/nonexistent/swapvisor.yaml"]);
    assert_eq!(code, 1);
    let verdict: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        verdict["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot read /nonexistent/swapvisor.yaml: "),
        "{verdict}"
    );
}

#[test]
fn types_lists_the_builtin_types() {
    let (code, stdout, _) = swapvisor(&["types", "--json"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(stdout.trim()).unwrap();
    let names = |key: &str| -> Vec<String> {
        listed[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names("moduleTypes"),
        [
            "fault.inject",
            "http.server",
            "http.upstream",
            "storage.postgres",
            "storage.sqlite"
        ]
    );
    assert_eq!(names("stepTypes"), BUILTIN_STEP_TYPES);
    assert_eq!(names("triggerTypes"), ["http", "schedule"]);
    assert_eq!(names("pluginKinds"), ["counter", "process"]);
    assert_eq!(listed["moduleTypes"][0]["contributor"], "core");
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = swapvisor(&["run"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = swapvisor(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn run_with_an_invalid_config_exits_1_and_names_the_error() {
    let config = TempConfig::new("modules: [{ name: a, type: nope }]");
    let (code, _, stderr) = swapvisor(&["run", config.as_str(), "--admin", "off"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(r#"modules[0] (name "a").type: unknown module type "nope""#),
        "{stderr}"
    );
}
