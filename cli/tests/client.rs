//! The binary as operators script it: the admin client commands and their exit codes,
//! configuration from the environment and a token file, JSON logs, and a custom binary built
//! from the library.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use common::{Swapvisor, TempConfig, get, request_with};

fn hello(version: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
"#
    )
}

/// Runs `swapvisor` to completion with `args` and `env`; returns the exit code, stdout and stderr.
fn swapvisor(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swapvisor"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run swapvisor");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn version(web: &str) -> String {
    let (code, body) = get(&format!("{web}/hello")).await;
    assert_eq!(code, 200, "{body}");
    body["version"].as_str().unwrap().to_owned()
}

/// A running instance configured only from the environment, its token in a file.
struct Instance {
    process: Swapvisor,
    config: TempConfig,
    token_file: std::path::PathBuf,
    web: String,
    admin: String,
}

fn start_from_environment() -> Instance {
    let config = TempConfig::new(&hello("v1"));
    let token_file = config.dir.path().join("token");
    std::fs::write(&token_file, "s3cret-admin-token\n").unwrap();
    let mut process = Swapvisor::start_with_env(
        &["run"],
        &[
            ("SWAPVISOR_CONFIG", config.as_str()),
            ("SWAPVISOR_ADMIN", "127.0.0.1:0"),
            ("SWAPVISOR_ADMIN_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );
    let (web, admin) = process.wait_until_up_with_admin("web");
    Instance {
        process,
        config,
        token_file,
        web,
        admin,
    }
}

#[tokio::test]
async fn run_reads_its_flags_from_the_environment_and_the_token_from_a_file() {
    let instance = start_from_environment();
    let status = format!("{}/api/v1/admin/engine/status", instance.admin);
    let (code, _) = request_with("GET", &status, &[], "").await.unwrap();
    assert_eq!(code, 401);
    // The file's trailing newline is not part of the token.
    let (code, body) = request_with(
        "GET",
        &status,
        &[("Authorization", "Bearer s3cret-admin-token")],
        "",
    )
    .await
    .unwrap();
    assert_eq!((code, body["generation"].clone()), (200, json!(1)));
    assert_eq!(version(&instance.web).await, "v1");
}

#[test]
fn every_run_flag_names_its_environment_variable_in_help() {
    let (code, help, _) = swapvisor(&["run", "--help"], &[]);
    assert_eq!(code, 0);
    for variable in [
        "SWAPVISOR_CONFIG",
        "SWAPVISOR_WATCH",
        "SWAPVISOR_ADMIN",
        "SWAPVISOR_ADMIN_TOKEN",
        "SWAPVISOR_ADMIN_TOKEN_FILE",
        "SWAPVISOR_ADMIN_MAX_BODY",
        "SWAPVISOR_LOG",
        "SWAPVISOR_LOG_FORMAT",
        "SWAPVISOR_CLUSTER_LISTEN",
        "SWAPVISOR_CLUSTER_PEERS",
        "SWAPVISOR_CLUSTER_COOKIE_FILE",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} missing in\n{help}"
        );
    }
}

#[test]
fn an_unreadable_or_empty_token_file_is_a_usage_error() {
    let config = TempConfig::new(&hello("v1"));
    let (code, _, stderr) = swapvisor(
        &[
            "run",
            config.as_str(),
            "--admin-token-file",
            "/nonexistent/token",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read the admin token file /nonexistent/token"),
        "{stderr}"
    );
    let empty = config.dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (code, _, stderr) = swapvisor(
        &[
            "run",
            config.as_str(),
            "--admin-token-file",
            empty.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the admin token must not be empty"),
        "{stderr}"
    );
}

#[tokio::test]
async fn reload_status_and_try_activate_talk_to_a_running_instance_and_exit_by_the_answer() {
    let instance = start_from_environment();
    let admin = instance.admin.trim_start_matches("http://").to_owned();
    let token_file = instance.token_file.to_str().unwrap().to_owned();
    let with_token = [("SWAPVISOR_ADMIN_TOKEN_FILE", token_file.as_str())];
    let target = ["--admin", admin.as_str()];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&target);
        swapvisor(&all, env)
    };
    let dir = instance.config.dir.path();
    let good = dir.join("v2.yaml");
    std::fs::write(&good, hello("v2")).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "modules: [{ name: a, type: nope }]").unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    // status: 0 when it answers; 1 without the token.
    let (code, stdout, _) = run(&["status"], &with_token);
    assert_eq!(code, 0);
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (answer["state"].clone(), answer["generation"].clone()),
        (json!("running"), json!(1))
    );
    let (code, stdout, stderr) = run(&["status"], &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("401 unauthorized"), "{stderr}");

    // try-activate: 0 for build_ok, 1 for build_failed; nothing changes either way.
    let (code, stdout, _) = run(&["try-activate", good], &with_token);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["status"],
        "build_ok"
    );
    let (code, stdout, stderr) = run(&["try-activate", bad], &with_token);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains(r#"unknown module type \"nope\""#)
            || stderr.contains(r#"unknown module type "nope""#),
        "{stderr}"
    );
    assert_eq!(version(&instance.web).await, "v1");

    // reload FILE: 0 for activated; 1 for a config that does not build.
    let (code, stdout, _) = run(&["reload", good], &with_token);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"status": "activated", "generation": 2})
    );
    assert_eq!(version(&instance.web).await, "v2");
    let (code, stdout, _) = run(&["reload", bad], &with_token);
    assert_eq!(code, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["status"],
        "build_failed"
    );
    // The same config again is unchanged, which is success.
    let (code, stdout, _) = run(&["reload", good], &with_token);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"status": "unchanged", "generation": 2})
    );
    // A stale --if-match is a conflict: 1.
    let (code, stdout, _) = run(&["reload", good, "--if-match", "1"], &with_token);
    assert_eq!(code, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["status"],
        "conflict"
    );
    // Without FILE the instance reloads its own file (still v1 on disk).
    let (code, stdout, _) = run(&["reload"], &with_token);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"status": "activated", "generation": 3})
    );
    assert_eq!(version(&instance.web).await, "v1");
    drop(instance.process);

    // Nobody listening: 1, and the reason.
    let (code, _, stderr) = run(&["status"], &with_token);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach the admin API"), "{stderr}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_reload_id_and_outcome() {
    let config = TempConfig::new(&hello("v1"));
    let mut process = Swapvisor::start(&[
        "run",
        config.as_str(),
        "--admin",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    let line = process.wait_for_line("swapvisor is up", Duration::from_secs(30));
    let up: Value = serde_json::from_str(&line).unwrap();
    let admin = up["fields"]["admin"].as_str().unwrap().to_owned();
    std::fs::write(&config.path, hello("v2")).unwrap();
    let (code, _) = request_with(
        "POST",
        &format!("{admin}/api/v1/admin/engine/reload"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    process.wait_for_line("\"generation\":2", Duration::from_secs(10));
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(15)), Some(0));
    while let Ok(line) = process.lines.recv_timeout(Duration::from_secs(5)) {
        process.seen.push(line);
    }
    let lines: Vec<Value> = process
        .seen
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let finished = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "reload finished"
                && l["fields"]["unit"] == "engine"
                && l["fields"]["generation"] == 2
        })
        .unwrap_or_else(|| panic!("no reload line in {lines:#?}"));
    assert_eq!(finished["fields"]["outcome"], "activated");
    assert_eq!(finished["span"]["name"], "reload");
    assert_eq!(finished["span"]["id"], 2, "{finished}");
    assert_eq!(finished["span"]["origin"], "Admin", "{finished}");
}

/// The example binary, built by `cargo test` next to the test executables.
fn custom_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let target = deps.parent().unwrap().parent().unwrap();
    target.join("examples").join("custom_binary")
}

const SHOUT: &str = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  shout:
    trigger: { type: http, config: { server: web, path: /shout } }
    steps:
      - { name: loud, type: shout.upper, config: { text: "hello {{ request.query.name }}" } }
      - { name: r, type: step.json_response, config: { body: { message: "{{ loud.text }}", version: "VERSION" } } }
"#;

#[tokio::test]
async fn a_custom_binary_serves_its_own_step_type_with_watch_sighup_and_the_admin_api() {
    let binary = custom_binary();
    assert!(binary.exists(), "{} was not built", binary.display());
    let config = TempConfig::new(&SHOUT.replace("VERSION", "v1"));
    let mut process = Swapvisor::start_binary(
        &binary,
        &["run", config.as_str(), "--admin", "127.0.0.1:0", "--watch"],
    );
    let (web, admin) = process.wait_until_up_with_admin("web");
    process.wait_for_line("watching the config file", Duration::from_secs(10));
    let shout = |web: String| async move { get(&format!("{web}/shout?name=ada")).await };
    assert_eq!(
        shout(web.clone()).await,
        (200, json!({"message": "HELLO ADA", "version": "v1"}))
    );
    // --watch
    std::fs::write(&config.path, SHOUT.replace("VERSION", "v2")).unwrap();
    process.wait_for_line("generation=2", Duration::from_secs(15));
    assert_eq!(shout(web.clone()).await.1["version"], "v2");
    // The admin API
    let (code, body) = request_with(
        "POST",
        &format!("{admin}/api/v1/admin/engine/reload"),
        &[],
        SHOUT.replace("VERSION", "v3"),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, body),
        (200, json!({"status": "activated", "generation": 3}))
    );
    assert_eq!(shout(web.clone()).await.1["version"], "v3");
    // SIGHUP reloads the file (v2 on disk).
    process.signal("HUP");
    process.wait_for_line("generation=4", Duration::from_secs(15));
    assert_eq!(
        shout(web.clone()).await,
        (200, json!({"message": "HELLO ADA", "version": "v2"}))
    );
    // Its own type is listed as its own.
    let output = Command::new(&binary)
        .args(["types", "--json"])
        .output()
        .unwrap();
    let types: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        types["stepTypes"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "shout.upper", "contributor": "custom_binary"})),
        "{types}"
    );
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(15)), Some(0));
}
