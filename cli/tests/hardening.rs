// Longer than 450 lines on purpose: one test per finding of the issue 23 probe, kept together as its record.
//! What the outside probe of issue 23 found, each held shut: a dry run never runs code, the
//! code store runs nothing it has not just verified, and no input grows without bound.
//!
//! Every test here shares one private code store (`SWAPVISOR_CODE_DIR`, set once for this test
//! binary) and gives each plugin executable content of its own, so one test's tampering never
//! reaches another's code.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Swapvisor, TempConfig, swapvisor, swapvisor_with_env};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use swapvisor::{Config, Engine, Registry, ReloadOutcome, Runtime, TryActivateResult};

/// The code store of this test binary.
#[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
fn store() -> &'static Path {
    static STORE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("store");
            // SAFETY: (test setup) set once, before any test of this binary builds a plugin;
            // every test calls `store()` first.
            unsafe { std::env::set_var("SWAPVISOR_CODE_DIR", &store) };
            (dir, store)
        })
        .1
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// examples/plugins/counter.py with a line of its own (so a hash of its own), made executable.
fn counter_copy(dir: &Path, tag: &str) -> (PathBuf, String) {
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/counter.py"),
    )
    .unwrap();
    let text = format!("{original}\n# {tag}\n");
    let path = dir.join(format!("{tag}.py"));
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, sha256(text.as_bytes()))
}

/// A shell script that creates `marker` when it runs: it must never run in these tests.
fn marker_script(dir: &Path, marker: &Path) -> PathBuf {
    let script = dir.join("touch-marker.sh");
    let text = format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display());
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A config whose only plugin runs `/bin/sh -c "touch MARKER"`, and whose pipeline uses a step
/// type the plugin would offer, declared or not.
fn touching_config(marker: &Path, declared: bool) -> String {
    let step_types = if declared {
        ", stepTypes: [probe.run]"
    } else {
        ""
    };
    format!(
        r#"
plugins:
  - name: x
    type: process
    config: {{ command: ["/bin/sh", "-c", "touch '{}'; exit 1"]{step_types} }}
pipelines:
  p:
    steps:
      - {{ name: run, type: probe.run }}
"#,
        marker.display()
    )
}

#[test]
fn validate_never_runs_a_plugin_and_takes_declared_step_types() {
    store();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");

    let undeclared = TempConfig::new(&touching_config(&marker, false));
    let (code, _, stderr) = swapvisor(&["validate", undeclared.as_str()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(r#"unknown step type "probe.run""#) && stderr.contains("stepTypes"),
        "{stderr}"
    );
    assert!(!marker.exists(), "validate ran the plugin's command");

    let declared = TempConfig::new(&touching_config(&marker, true));
    let (_, stdout, _) = swapvisor(&["validate", declared.as_str()]);
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verdict["status"], "build_ok", "{verdict}");
    assert!(
        verdict["usedTypes"]["stepTypes"]
            .as_array()
            .unwrap()
            .contains(&json!("probe.run"))
    );
    assert!(!marker.exists(), "validate ran the plugin's command");

    // Running code is opt-in, and says so.
    let (_, help, _) = swapvisor(&["validate", "--help"]);
    assert!(help.contains("EXECUTES"));
}

#[test]
fn validate_describe_runs_the_plugin_on_request() {
    store();
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _) = counter_copy(dir.path(), "describe");
    let config = TempConfig::new(&format!(
        "plugins:\n  - {{ name: c, type: process, config: {{ command: [{plugin:?}] }} }}\npipelines:\n  p:\n    steps:\n      - {{ name: add, type: counter.add }}\n"
    ));
    let run = |describe: bool| {
        let mut args = vec!["validate", config.as_str()];
        if describe {
            args.push("--describe");
        }
        let (_, stdout, _) = swapvisor(&args);
        serde_json::from_str::<Value>(&stdout).unwrap()["status"].clone()
    };
    assert_eq!(run(false), "build_failed");
    assert_eq!(run(true), "build_ok");

    // A describe that fails is remembered for that code: two entries running it are described
    // once, not once each.
    let log = dir.path().join("runs.log");
    let failing = dir.path().join("failing.sh");
    std::fs::write(
        &failing,
        format!("#!/bin/sh\necho run >> '{}'\nexit 1\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let entry = |name: &str| {
        format!("  - {{ name: {name}, type: process, config: {{ command: [{failing:?}] }} }}\n")
    };
    let twice = TempConfig::new(&format!(
        "plugins:\n{}{}pipelines:\n  p:\n    steps:\n      - {{ name: add, type: counter.add }}\n",
        entry("a"),
        entry("b")
    ));
    let (_, stdout, _) = swapvisor(&["validate", twice.as_str(), "--describe"]);
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verdict["status"], "build_failed", "{verdict}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "run\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_build_or_try_activate_runs_a_plugin() {
    store();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let config = Config::parse(touching_config(&marker, true).as_bytes()).unwrap();

    // A plain build.
    let engine = Engine::build(&config, &Registry::with_builtins())
        .await
        .expect("builds");
    drop(engine);
    assert!(!marker.exists(), "a build ran the plugin's command");

    // Try-activate through the Rust API, on a runtime serving something else.
    let serving = Config::parse(b"pipelines:\n  p:\n    steps: []\n").unwrap();
    let runtime = Runtime::start(serving, Registry::with_builtins())
        .await
        .unwrap();
    let verdict = runtime.try_activate(config.clone()).await.unwrap();
    assert!(
        matches!(verdict, TryActivateResult::BuildOk { .. }),
        "{verdict:?}"
    );
    assert!(!marker.exists(), "try-activate ran the plugin's command");
    runtime.shutdown().await.unwrap();

    // Try-activate through the admin API, undeclared and declared.
    let served = TempConfig::new(
        "modules:\n  - { name: web, type: http.server, config: { address: \"127.0.0.1:0\" } }\npipelines:\n  p:\n    steps: []\n",
    );
    let mut process = Swapvisor::start(&["run", served.as_str(), "--admin", "127.0.0.1:0"]);
    let (_, admin) = process.wait_until_up_with_admin("web");
    for declared in [false, true] {
        let (status, body) = common::request_with(
            "POST",
            &format!("{admin}/api/v1/admin/engine/try-activate"),
            &[("content-type", "application/yaml")],
            touching_config(&marker, declared),
        )
        .await
        .unwrap();
        let expected = if declared { "build_ok" } else { "build_failed" };
        assert_eq!(body["status"], expected, "{status} {body}");
    }
    assert!(
        !marker.exists(),
        "the admin try-activate ran the plugin's command"
    );
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
}

/// A `counter` plugin entry running `plugin`, declaring `types`.
fn counter_config(plugin: &Path, types: &str) -> Config {
    let yaml = format!(
        r#"
plugins:
  - name: c
    type: process
    config: {{ command: [{plugin:?}], stepTypes: {types} }}
    restart: {{ maxRestarts: 1, within: 10s, backoff: {{ initial: 10ms, max: 10ms }} }}
pipelines:
  count:
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: c, op: increment }} }}
"#
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

async fn plugin_status(runtime: &Runtime) -> swapvisor::plugin::PluginStatus {
    let status = runtime.status().await.unwrap();
    status.plugins.into_iter().find(|p| p.name == "c").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_offers_other_step_types_than_declared_is_rolled_back() {
    store();
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _) = counter_copy(dir.path(), "mismatch");
    let runtime = Runtime::start(
        counter_config(&plugin, "[counter.add]"),
        Registry::with_builtins(),
    )
    .await
    .expect("the declaration matches the handshake");
    assert_eq!(
        runtime.execute("count", json!({})).await.unwrap(),
        json!({"count": 1})
    );
    let record = runtime
        .reload(counter_config(&plugin, "[counter.add, counter.sub]"))
        .await
        .unwrap();
    match &record.outcome {
        ReloadOutcome::RolledBack { error } => assert!(
            error.contains(r#"offers the step types ["counter.add"]"#)
                && error.contains(r#"declares (stepTypes) ["counter.add", "counter.sub"]"#),
            "{error}"
        ),
        other => panic!("expected RolledBack, got {other:?}"),
    }
    // The old process serves on.
    assert_eq!(
        runtime.execute("count", json!({})).await.unwrap(),
        json!({"count": 2})
    );
    runtime.shutdown().await.unwrap();
}

/// Waits until the plugin's status satisfies `check`.
async fn wait_plugin(
    runtime: &Runtime,
    check: impl Fn(&swapvisor::plugin::PluginStatus) -> bool,
) -> swapvisor::plugin::PluginStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = plugin_status(runtime).await;
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "plugin status stayed {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
async fn a_stored_copy_changed_after_it_was_written_is_refused_at_restart_and_swap() {
    let store = store();
    let dir = tempfile::tempdir().unwrap();
    // The Rust counter plugin, under a path of this test's own.
    let binary = dir.path().join("counter-plugin");
    std::fs::copy(env!("CARGO_BIN_EXE_swapvisor-counter-plugin"), &binary).unwrap();
    let hash = sha256(&std::fs::read(&binary).unwrap());
    let runtime = Runtime::start(counter_config(&binary, "[]"), Registry::with_builtins())
        .await
        .unwrap();
    let first = plugin_status(&runtime).await;
    assert_eq!(first.code.as_deref(), Some(hash.as_str()));
    let pid = first.pid.unwrap();
    // What runs is the sealed copy of the verified bytes, not a path in the store.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:swapvisor-plugin"),
        "{exe:?}"
    );

    // Replace the stored copy, then crash the plugin: the restart must not run the new file.
    let copy = store.join(&hash);
    let mut tampered = std::fs::read(&copy).unwrap();
    tampered.extend_from_slice(b"tampered");
    let found = sha256(&tampered);
    std::fs::write(&copy, &tampered).unwrap();
    // SAFETY: a plain kill of the plugin's process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let refused = wait_plugin(&runtime, |p| {
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("refusing to run"))
    })
    .await;
    let error = refused.last_error.unwrap();
    assert!(
        error.contains(&format!("sha256:{found}")) && error.contains(&format!("sha256:{hash}")),
        "{error}"
    );
    assert_ne!(refused.pid, Some(pid));

    // A swap to the same code (its file unchanged) meets the same stored copy: rolled back.
    let spec = swapvisor::config::PluginSpec::parse(
        format!("{{ name: c, type: process, config: {{ command: [{binary:?}], stepTypes: [] }} }}")
            .as_bytes(),
    )
    .unwrap();
    let record = runtime.plugin("c").unwrap().reload(spec).await.unwrap();
    match &record.outcome {
        ReloadOutcome::RolledBack { error } | ReloadOutcome::Rejected { error, .. } => {
            assert!(error.contains(&format!("sha256:{found}")), "{error}")
        }
        other => panic!("expected the swap refused, got {other:?}"),
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
async fn a_foreign_or_linked_file_under_the_expected_hash_is_never_run() {
    let store = store();
    std::fs::create_dir_all(store).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let script = marker_script(dir.path(), &marker);
    let hash = sha256(&std::fs::read(&script).unwrap());
    let copy = store.join(&hash);
    let config = Config::parse(
        format!(
            "plugins:\n  - {{ name: c, type: process, config: {{ command: [{script:?}] }} }}\npipelines:\n  p:\n    steps: []\n"
        )
        .as_bytes(),
    )
    .unwrap();
    type Seed<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let mut seeded: Vec<Seed> = vec![
        (
            "symbolic link",
            Box::new(|| std::os::unix::fs::symlink(&script, &copy).unwrap()),
        ),
        (
            "other users can write it",
            Box::new(|| {
                std::fs::copy(&script, &copy).unwrap();
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o777)).unwrap();
            }),
        ),
    ];
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        seeded.push((
            "owned by uid 65534",
            Box::new(|| {
                std::fs::copy(&script, &copy).unwrap();
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
                std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).unwrap();
            }),
        ));
    }
    for (why, seed) in seeded {
        let _ = std::fs::remove_file(&copy);
        seed();
        let error = Runtime::start(config.clone(), Registry::with_builtins())
            .await
            .err()
            .unwrap_or_else(|| panic!("a pre-seeded copy ({why}) started"));
        let error = error.to_string();
        assert!(
            error.contains(why) && error.contains(&hash),
            "{why}: {error}"
        );
        assert!(!marker.exists(), "the pre-seeded copy ({why}) ran");
        // Refused, not replaced: the seeded file is still there, for the operator to see.
        assert!(std::fs::symlink_metadata(&copy).is_ok());
    }
    std::fs::remove_file(&copy).unwrap();

    // A store folder others can write is refused at every use, not only at creation.
    std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = Runtime::start(config.clone(), Registry::with_builtins())
        .await
        .expect_err("a world-writable store is refused");
    std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(
        error.to_string().contains("can be written by other users"),
        "{error}"
    );
    assert!(!marker.exists());
}

/// The doubling chain of the probe: `n` steps, each writing the previous output twice.
fn doubling_chain(n: usize) -> String {
    let mut steps =
        String::from("      - { name: s0, type: step.set, config: { values: { x: ab } } }\n");
    for i in 1..n {
        steps.push_str(&format!(
            "      - {{ name: s{i}, type: step.set, config: {{ values: {{ x: \"{{{{ s{p}.x }}}}{{{{ s{p}.x }}}}\" }} }} }}\n",
            p = i - 1
        ));
    }
    format!(
        "modules:\n  - {{ name: web, type: http.server, config: {{ address: \"127.0.0.1:0\" }} }}\npipelines:\n  grow:\n    trigger: {{ type: http, config: {{ server: web, method: GET, path: /grow }} }}\n    steps:\n{steps}"
    )
}

#[test]
fn validate_refuses_a_doubling_template_chain_naming_its_steps() {
    let config = TempConfig::new(&doubling_chain(40));
    let (code, _, stderr) = swapvisor(&["validate", config.as_str()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(r#"pipelines.grow.steps[10] (name "s10")"#)
            && stderr.contains(r#""s1" -> "s2""#)
            && stderr.contains("at most 1000 times"),
        "{stderr}"
    );
    // Nine doublings stay within the bound.
    let config = TempConfig::new(&doubling_chain(10));
    let (code, _, stderr) = swapvisor(&["validate", config.as_str()]);
    assert_eq!(code, 0, "{stderr}");
}

/// Sends `request` on a fresh connection and reads until the server closes it.
fn raw(to: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(to).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// The peak resident memory of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[test]
fn a_run_past_its_render_budget_answers_500_and_the_process_serves_on() {
    // 40 references to the request body: a factor of 40, within the static bound; a 600 KB
    // body then renders 24 MB, past the 16 MiB budget.
    let refs = "{{ request.body.s }}".repeat(40);
    let config = TempConfig::new(&format!(
        "modules:\n  - {{ name: web, type: http.server, config: {{ address: \"127.0.0.1:0\" }} }}\npipelines:\n  wide:\n    trigger: {{ type: http, config: {{ server: web, method: POST, path: /wide }} }}\n    steps:\n      - {{ name: big, type: step.set, config: {{ values: {{ x: \"{refs}\" }} }} }}\n      - {{ name: respond, type: step.json_response, config: {{ body: {{ size: ok }} }} }}\n"
    ));
    let mut process = Swapvisor::start(&["run", config.as_str()]);
    let web = address(&process.wait_until_up("web"));
    let post = |s: &str| {
        let body = json!({ "s": s }).to_string();
        let request = format!(
            "POST /wide HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        raw(web, request.as_bytes())
    };
    let idle = peak_rss_mib(process.child.id());
    for _ in 0..5 {
        let (status, text) = post(&"x".repeat(600_000));
        assert_eq!(status, 500, "{text}");
        assert!(text.contains("maxRenderBytes"), "{text}");
    }
    let (status, text) = post("small");
    assert_eq!(status, 200, "{text}");
    let peak = peak_rss_mib(process.child.id());
    eprintln!("peak RSS: {idle} MiB idle, {peak} MiB after five over-budget runs");
    // Sixteen MiB of rendering, the request and its copies: far below the 1 GiB the unbounded
    // render took.
    assert!(peak < idle + 200, "peak RSS {peak} MiB (idle {idle} MiB)");
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test]
async fn env_expansion_past_its_bound_is_refused_with_its_place() {
    let value = "v".repeat(100_000);
    let lookup = move |name: &str| (name == "BIG").then(|| value.clone());
    let refs = vec!["${BIG}"; 50].join("");
    let yaml = format!(
        "pipelines:\n  p:\n    steps:\n      - {{ name: s, type: step.set, config: {{ values: {{ x: \"{refs}\" }} }} }}\n"
    );
    let built = Engine::build_from_source(
        yaml.as_bytes(),
        &swapvisor::config::DocumentLimits::default(),
        &Registry::with_builtins(),
        &lookup,
    )
    .await;
    let Err(error) = built else {
        panic!("a config expanding to 5 MB was built")
    };
    let error = error.to_string();
    assert!(
        error.contains(r#"pipelines.p.steps[0] (name "s").config.values.x"#)
            && error.contains("4 MiB"),
        "{error}"
    );
}

#[test]
fn deep_nesting_and_tags_are_refused_before_parsing() {
    let deep = TempConfig::new(&"[".repeat(100_000));
    let started = Instant::now();
    let (code, _, stderr) = swapvisor(&["validate", deep.as_str()]);
    let took = started.elapsed();
    eprintln!("a 100,000-deep file was refused in {took:?} (the whole validate run)");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("nesting is deeper than 64 levels"),
        "{stderr}"
    );

    let tagged = TempConfig::new("pipelines:\n  p:\n    steps: !!binary aGVsbG8=\n");
    let (code, _, stderr) = swapvisor(&["validate", tagged.as_str()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("YAML tags"), "{stderr}");
}

#[test]
fn small_items_tokens_bearer_host_and_log_lines() {
    let config = TempConfig::new(
        "modules:\n  - { name: web, type: http.server, config: { address: \"127.0.0.1:0\" } }\npipelines:\n  say:\n    trigger: { type: http, config: { server: web, method: GET, path: /say } }\n    steps:\n      - { name: log, type: step.log, config: { message: \"said {{ request.query.m }}\" } }\n",
    );
    // Short or blank tokens are refused by the flag, the variable and the file.
    let token_file = config.dir.path().join("token");
    std::fs::write(&token_file, "   \n").unwrap();
    for (args, env) in [
        (vec!["--admin-token", "   "], vec![]),
        (vec!["--admin-token", "x"], vec![]),
        (vec![], vec![("SWAPVISOR_ADMIN_TOKEN", "short")]),
        (
            vec!["--admin-token-file", token_file.to_str().unwrap()],
            vec![],
        ),
    ] {
        let run = ["run", config.as_str(), "--admin", "0.0.0.0:0"];
        let all: Vec<&str> = run.iter().chain(&args).copied().collect();
        let (code, _, stderr) = swapvisor_with_env(&all, &env);
        assert_ne!(code, 0, "{args:?} {env:?}");
        assert!(
            stderr.contains("at least 16") || stderr.contains("only whitespace"),
            "{args:?} {env:?}: {stderr}"
        );
    }

    let token = "a-token-long-enough-1234";
    let mut process = Swapvisor::start(&[
        "run",
        config.as_str(),
        "--admin",
        "127.0.0.1:0",
        "--admin-token",
        token,
    ]);
    let (web, admin) = process.wait_until_up_with_admin("web");
    let (web, admin) = (address(&web), address(&admin));
    // The Bearer scheme is case-insensitive.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, text) = raw(
            admin,
            format!("GET /api/v1/admin/engine/status HTTP/1.1\r\nHost: t\r\nAuthorization: {scheme} {token}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status, 200, "{scheme}: {text}");
    }
    // Exactly one Host, or 400.
    let (status, _) = raw(web, b"GET /say HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _) = raw(
        web,
        b"GET /say HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
    // A newline in a logged value stays inside its line.
    let (status, _) = raw(
        web,
        b"GET /say?m=hi%0AERROR%20forged HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let line = process.wait_for_line("said hi", Duration::from_secs(10));
    assert!(line.contains(r"said hi\nERROR forged"), "{line}");
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        !process.seen.iter().any(|l| l.starts_with("ERROR forged")),
        "a forged line reached the log"
    );
}

#[test]
fn three_hundred_slow_bodies_leave_the_admin_probes_answering() {
    let config = TempConfig::new(
        "modules:\n  - { name: web, type: http.server, config: { address: \"127.0.0.1:0\" } }\npipelines:\n  p:\n    steps: []\n",
    );
    let mut process = Swapvisor::start_under_ulimit(
        "-n 1024",
        &["run", config.as_str(), "--admin", "127.0.0.1:0"],
    );
    let (_, admin) = process.wait_until_up_with_admin("web");
    let admin = address(&admin);
    let mut slow = Vec::new();
    for _ in 0..300 {
        let Ok(mut stream) = TcpStream::connect(admin) else {
            continue;
        };
        let head = "POST /api/v1/admin/engine/try-activate HTTP/1.1\r\nHost: t\r\nContent-Type: application/yaml\r\nContent-Length: 1000000\r\n\r\np";
        if stream.write_all(head.as_bytes()).is_ok() {
            slow.push(stream);
        }
    }
    // Every ordinary slot is held by a body that trickles in; the probes still answer.
    for path in ["/healthz", "/readyz"] {
        let (status, text) = raw(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status, 200, "{path}: {text}");
    }
    drop(slow);
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(15)), Some(0));
}
