// Longer than 450 lines on purpose: one test per operator scenario against the binary; each stands alone.
//! What operators meet first, end to end against the binary: readiness through reloads and a
//! slow start, a 413 the client can read, ConfigMap updates under `--watch`, routing, identical
//! reloads, `If-Match` and `ETag`, the live config, and request metrics.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use common::{Swapvisor, TempConfig, client, get, get_full, request, request_with};

fn hello(version: &str, extra: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
{extra}
plugins:
  - {{ name: hits, type: counter }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, method: "*", path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
"#
    )
}

struct Running {
    _process: Swapvisor,
    _config: TempConfig,
    web: String,
    admin: String,
}

fn run(text: &str, extra_args: &[&str]) -> Running {
    let config = TempConfig::new(text);
    let mut args = vec!["run", config.as_str(), "--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra_args);
    let mut process = Swapvisor::start(&args);
    let (web, admin) = process.wait_until_up_with_admin("web");
    Running {
        _process: process,
        _config: config,
        web,
        admin,
    }
}

async fn reload(admin: &str, body: &str) -> (u16, Value) {
    request_with(
        "POST",
        &format!("{admin}/api/v1/admin/engine/reload"),
        &[],
        body.to_owned(),
    )
    .await
    .unwrap()
}

async fn version(web: &str) -> String {
    let (code, body) = get(&format!("{web}/hello")).await;
    assert_eq!(code, 200, "{body}");
    body["version"].as_str().unwrap().to_owned()
}

/// Polls `/readyz` on one keep-alive connection until told to stop; returns every answer that
/// was not 200, and how many polls were made.
fn poll_readiness(
    admin: &str,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<(Vec<(u16, Value)>, usize)> {
    let url = format!("{admin}/readyz");
    tokio::spawn(async move {
        let poller = client();
        let mut not_ready = Vec::new();
        let mut polls = 0;
        loop {
            let answer = request(&poller, "GET", &url, "").await.unwrap();
            polls += 1;
            if answer.0 != 200 {
                not_ready.push(answer);
            }
            tokio::select! {
                _ = stop.notified() => return (not_ready, polls),
                _ = tokio::time::sleep(Duration::from_millis(3)) => {}
            }
        }
    })
}

#[tokio::test]
async fn readyz_stays_200_through_50_start_first_reloads() {
    let running = run(&hello("v0", ""), &[]);
    let stop = Arc::new(tokio::sync::Notify::new());
    let poller = poll_readiness(&running.admin, stop.clone());
    for generation in 2..=51u64 {
        let (code, body) = reload(&running.admin, &hello(&format!("v{generation}"), "")).await;
        assert_eq!(
            (code, body),
            (
                200,
                json!({"status": "activated", "generation": generation})
            )
        );
    }
    assert_eq!(version(&running.web).await, "v51");
    stop.notify_one();
    let (not_ready, polls) = poller.await.unwrap();
    assert_eq!(not_ready, [], "readyz left 200 during start-first reloads");
    assert!(polls >= 10, "only {polls} polls");
}

/// The admin API's URL, from the line logged when it is up (before the first engine starts).
fn admin_before_start(process: &mut Swapvisor) -> String {
    let line = process.wait_for_line("the admin API is up", Duration::from_secs(30));
    line[line.find("admin=").unwrap() + 6..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn healthz_answers_during_a_slow_start_and_readyz_says_starting() {
    let slow = hello(
        "v1",
        "  - { name: slow, type: fault.inject, config: { failOn: start, mode: slow, delay: 3s } }",
    );
    let config = TempConfig::new(&slow);
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "127.0.0.1:0"]);
    let admin = admin_before_start(&mut process);
    assert_eq!(
        get(&format!("{admin}/healthz")).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        get(&format!("{admin}/readyz")).await,
        (503, json!({"status": "not_ready", "state": "starting"}))
    );
    let (code, body) = get(&format!("{admin}/api/v1/admin/engine/status")).await;
    assert_eq!((code, body["state"].clone()), (503, json!("starting")));
    assert!(
        !process.seen.iter().any(|l| l.contains("swapvisor is up")),
        "the engine started before the probes were answered; the test proves nothing"
    );
    process.wait_for_line("swapvisor is up", Duration::from_secs(30));
    assert_eq!(
        get(&format!("{admin}/readyz")).await,
        (200, json!({"status": "ready", "state": "running"}))
    );
}

#[tokio::test]
async fn readyz_is_503_in_a_stop_first_gap_and_while_stopping() {
    let stop_first = "runtime: { reload: { mode: stop-first } }\n";
    let mut running = run(&(hello("v1", "") + stop_first), &[]);
    let admin = running.admin.clone();
    // The new engine takes a second to start, and stop-first leaves nothing serving meanwhile.
    let slow = hello(
        "v2",
        "  - { name: slow, type: fault.inject, config: { failOn: start, mode: slow, delay: 1s } }",
    ) + stop_first;
    let swap = tokio::spawn({
        let admin = admin.clone();
        async move { reload(&admin, &slow).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(&format!("{admin}/readyz")).await;
        if code == 503 {
            assert_eq!(body, json!({"status": "not_ready", "state": "reloading"}));
            break;
        }
        assert!(!swap.is_finished(), "the gap passed without a 503");
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never left 200"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        swap.await.unwrap(),
        (200, json!({"status": "activated", "generation": 2}))
    );
    assert_eq!(
        get(&format!("{admin}/readyz")).await,
        (200, json!({"status": "ready", "state": "running"}))
    );

    // Stopping: a request in flight holds the drain while readiness is polled.
    let slow_request = hello("v3", "")
        .replace(
            "      - { name: r,",
            "      - { name: wait, type: step.delay, config: { duration: 2s } }\n      - { name: r,",
        )
        .to_owned()
        + stop_first;
    assert_eq!(reload(&admin, &slow_request).await.0, 200);
    let in_flight = tokio::spawn({
        let web = running.web.clone();
        async move { get(&format!("{web}/hello")).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&admin).await["inFlight"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running._process.signal("TERM");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(&format!("{admin}/readyz")).await;
        if code == 503 {
            assert_eq!(body["state"], "stopping", "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never left 200"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(in_flight.await.unwrap().0, 200);
    assert_eq!(running._process.wait_exit(Duration::from_secs(15)), Some(0));
}

/// Writes a request with a body of `size` bytes in full before reading anything, as Python's
/// `http.client` does, and returns the status line of the answer.
fn post_whole_body_then_read(url: &str, path: &str, size: usize) -> Result<String, String> {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("writing the head: {e}"))?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0;
    while written < size {
        let n = chunk.len().min(size - written);
        stream
            .write_all(&chunk[..n])
            .map_err(|e| format!("writing the body after {written} bytes: {e}"))?;
        written += n;
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[tokio::test]
async fn a_client_that_writes_a_2_mib_body_before_reading_gets_the_413() {
    let running = run(&hello("v1", ""), &[]);
    let (web, admin) = (running.web.clone(), running.admin.clone());
    let results = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        for _ in 0..20 {
            results.push(post_whole_body_then_read(&web, "/hello", 2 * 1024 * 1024));
            results.push(post_whole_body_then_read(
                &admin,
                "/api/v1/admin/engine/reload",
                2 * 1024 * 1024,
            ));
        }
        results
    })
    .await
    .unwrap();
    for result in &results {
        assert_eq!(
            result.as_deref(),
            Ok("HTTP/1.1 413 Payload Too Large"),
            "{results:?}"
        );
    }
    assert_eq!(results.len(), 40);
    // Nothing was reloaded by the refused bodies.
    assert_eq!(version(&running.web).await, "v1");
}

#[tokio::test]
async fn a_configmap_style_symlink_swap_reloads_under_watch() {
    // What the kubelet does: the file is a symlink through `..data`, itself a symlink to a
    // timestamped folder; an update writes a new folder and renames a new `..data` over the
    // old one. No event names the config file.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).unwrap();
    std::fs::write(root.join("..v1/config.yaml"), hello("v1", "")).unwrap();
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.yaml", root.join("config.yaml")).unwrap();
    let path = root.join("config.yaml");
    let mut process =
        Swapvisor::start(&["run", path.to_str().unwrap(), "--admin", "off", "--watch"]);
    let web = process.wait_until_up("web");
    process.wait_for_line("watching the config file", Duration::from_secs(10));
    assert_eq!(version(&web).await, "v1");

    std::fs::create_dir(root.join("..v2")).unwrap();
    std::fs::write(root.join("..v2/config.yaml"), hello("v2", "")).unwrap();
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    process.wait_for_line("generation=2", Duration::from_secs(15));
    assert_eq!(version(&web).await, "v2");
}

const ROUTES: &str = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  by-id:
    trigger: { type: http, config: { server: web, method: GET, path: "/users/{id}" } }
    steps:
      - { name: r, type: step.json_response, config: { body: { pipeline: by-id, id: "{{ request.params.id }}" } } }
  me:
    trigger: { type: http, config: { server: web, method: GET, path: /users/me } }
    steps:
      - { name: r, type: step.json_response, config: { body: { pipeline: me } } }
"#;

#[tokio::test]
async fn static_segments_beat_parameters_and_paths_are_percent_decoded() {
    let config = TempConfig::new(ROUTES);
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "off"]);
    let web = process.wait_until_up("web");
    assert_eq!(
        get(&format!("{web}/users/me")).await,
        (200, json!({"pipeline": "me"}))
    );
    assert_eq!(
        get(&format!("{web}/users/42")).await,
        (200, json!({"pipeline": "by-id", "id": "42"}))
    );
    assert_eq!(
        get(&format!("{web}/users/a+b%20c%2Fd")).await,
        (200, json!({"pipeline": "by-id", "id": "a+b c/d"}))
    );
    let (code, body) = request_with("POST", &format!("{web}/users/me"), &[], "")
        .await
        .unwrap();
    assert_eq!((code, body["allowed"].clone()), (405, json!(["GET"])));
}

#[test]
fn routes_that_would_serve_the_same_requests_are_a_config_error_naming_both() {
    let clash = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  first:
    trigger: { type: http, config: { server: web, method: GET, path: "/a/{x}" } }
    steps: [ { name: r, type: step.json_response, config: { body: 1 } } ]
  second:
    trigger: { type: http, config: { server: web, method: GET, path: "/a/{y}" } }
    steps: [ { name: r, type: step.json_response, config: { body: 2 } } ]
"#;
    let config = TempConfig::new(clash);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_swapvisor"))
        .args(["validate", config.as_str()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["status"], "build_failed");
    let error = verdict["error"].as_str().unwrap();
    assert!(
        error.contains(r#"pipelines.second.trigger.config: route GET /a/{y} of pipeline "second" on server "web" clashes with route GET /a/{x} of pipeline "first""#),
        "{error}"
    );
}

#[tokio::test]
async fn an_identical_reload_is_unchanged_restarts_nothing_and_is_counted() {
    let running = run(&hello("v1", ""), &[]);
    let admin = &running.admin;
    let before = status(admin).await;
    assert_eq!(
        reload(admin, &hello("v1", "")).await,
        (200, json!({"status": "unchanged", "generation": 1}))
    );
    // Only the layout differs: the same config.
    let reformatted = hello("v1", "").replace(
        "  - { name: hits, type: counter }",
        "  - name: hits\n    type: counter",
    );
    assert_eq!(
        reload(admin, &reformatted).await,
        (200, json!({"status": "unchanged", "generation": 1}))
    );
    // An empty body reloads the (unchanged) file.
    assert_eq!(
        reload(admin, "").await,
        (200, json!({"status": "unchanged", "generation": 1}))
    );
    let after = status(admin).await;
    assert_eq!(after["generation"], 1);
    assert_eq!(
        after["retirements"], before["retirements"],
        "an engine was replaced"
    );
    assert_eq!(
        after["plugins"][0]["generation"],
        before["plugins"][0]["generation"]
    );
    assert_eq!(
        common::outcomes(&after),
        ["activated", "unchanged", "unchanged", "unchanged"]
    );
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"swapvisor_reloads_total{outcome="unchanged"} 3"#),
        "{metrics}"
    );
    // A change is still a change.
    assert_eq!(
        reload(admin, &hello("v2", "")).await,
        (200, json!({"status": "activated", "generation": 2}))
    );
    assert_eq!(version(&running.web).await, "v2");
}

async fn status(admin: &str) -> Value {
    let (code, body) = get(&format!("{admin}/api/v1/admin/engine/status")).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test]
async fn if_match_failures_are_412_and_status_carries_the_generation_as_etag() {
    let running = run(&hello("v1", ""), &[]);
    let admin = &running.admin;
    let (code, headers, body) = get_full(&format!("{admin}/api/v1/admin/engine/status")).await;
    assert_eq!((code, body["generation"].clone()), (200, json!(1)));
    let etag = headers.get("etag").unwrap().to_str().unwrap().to_owned();
    assert_eq!(etag, "\"1\"");
    let url = format!("{admin}/api/v1/admin/engine/reload");
    assert_eq!(
        request_with("POST", &url, &[("If-Match", "\"7\"")], hello("v2", ""))
            .await
            .unwrap(),
        (412, json!({"status": "conflict", "generation": 1}))
    );
    assert_eq!(version(&running.web).await, "v1");
    assert_eq!(
        request_with("POST", &url, &[("If-Match", &etag)], hello("v2", ""))
            .await
            .unwrap(),
        (200, json!({"status": "activated", "generation": 2}))
    );
    let (_, headers, _) = get_full(&format!("{admin}/api/v1/admin/engine/status")).await;
    assert_eq!(headers.get("etag").unwrap(), "\"2\"");
}

#[tokio::test]
async fn the_live_config_is_served_without_expanding_variables() {
    let text = hello("v1", "")
        + "  secret:\n    steps:\n      - { name: s, type: step.set, config: { values: { key: \"${SWAPVISOR_TEST_SECRET}\" } } }\n";
    let config = TempConfig::new(&text);
    let mut process = Swapvisor::start_with_env(
        &["run", config.as_str(), "--admin", "127.0.0.1:0"],
        &[("SWAPVISOR_TEST_SECRET", "hunter2")],
    );
    let (_, admin) = process.wait_until_up_with_admin("web");
    let (code, headers, live) = get_full(&format!("{admin}/api/v1/admin/engine/config")).await;
    assert_eq!(code, 200, "{live}");
    assert_eq!(headers.get("etag").unwrap(), "\"1\"");
    let text = live.to_string();
    assert!(text.contains("${SWAPVISOR_TEST_SECRET}"), "{text}");
    assert!(!text.contains("hunter2"), "the secret leaked: {text}");
    assert_eq!(
        live["pipelines"]["hello"]["steps"][0]["type"], "step.json_response",
        "{live}"
    );
    // What it serves is a config: posting it back changes nothing.
    assert_eq!(
        reload(&admin, &text).await,
        (200, json!({"status": "unchanged", "generation": 1}))
    );
}

#[tokio::test]
async fn metrics_count_requests_by_pipeline_and_status_class_and_show_build_info() {
    let running = run(&hello("v1", ""), &[]);
    for _ in 0..3 {
        assert_eq!(version(&running.web).await, "v1");
    }
    let (code, _) = request_with(
        "POST",
        &format!("{}/hello", running.web),
        &[],
        vec![b'x'; 2 << 20],
    )
    .await
    .unwrap();
    assert_eq!(code, 413);
    let (code, text) = get(&format!("{}/metrics", running.admin)).await;
    assert_eq!(code, 200);
    let text = text.as_str().unwrap().to_owned();
    common::assert_has_lines(
        &text,
        [
            format!(
                r#"swapvisor_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
            r#"swapvisor_http_requests_total{pipeline="hello",status_class="2xx"} 3"#.to_owned(),
            r#"swapvisor_http_requests_total{pipeline="hello",status_class="4xx"} 1"#.to_owned(),
            r#"swapvisor_http_request_duration_seconds_count{pipeline="hello"} 4"#.to_owned(),
            r#"swapvisor_http_request_duration_seconds_bucket{pipeline="hello",le="+Inf"} 4"#
                .to_owned(),
        ],
    );
    assert_exposition_is_well_formed(&text);
    promtool_check(&text);
}

/// Prometheus conventions: every sample belongs to a family with HELP and TYPE; counters end in
/// `_total`.
fn assert_exposition_is_well_formed(text: &str) {
    let mut typed = std::collections::HashMap::new();
    let mut helped = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let name = words.next().unwrap().to_owned();
            let kind = words.next().unwrap().to_owned();
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
            typed.insert(name, kind);
        } else if !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family), "{name} has no TYPE");
            assert!(helped.contains(family), "{name} has no HELP");
        }
    }
}

/// `promtool check metrics`, where promtool is installed (docs/DEPLOYMENT.md says how).
fn promtool_check(text: &str) {
    let Some(promtool) = common::promtool("`promtool check metrics`") else {
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_shutdown_signal_during_a_slow_start_exits_cleanly() {
    let hanging = hello(
        "v1",
        "  - { name: slow, type: fault.inject, config: { failOn: start, mode: hang } }",
    );
    let config = TempConfig::new(&hanging);
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "127.0.0.1:0"]);
    let admin = admin_before_start(&mut process);
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(15)), Some(0));
    process.wait_for_line(
        "shutting down before the first engine started",
        Duration::from_secs(5),
    );
    assert!(
        std::net::TcpStream::connect(admin.trim_start_matches("http://")).is_err(),
        "the admin port must be free after exit"
    );
}

#[test]
fn run_raises_the_soft_open_file_limit_to_the_hard_limit() {
    let config = TempConfig::new(&hello("v1", ""));
    let mut process = Swapvisor::start_under_ulimit("-Sn 200", &["run", config.as_str()]);
    process.wait_until_up("web");
    let line = process.wait_for_line("raised the open-file limit", Duration::from_secs(10));
    assert!(line.contains("before=200"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", process.child.id())).unwrap();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    // "Max open files  <soft>  <hard>  files"
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft and hard limits differ: {row}");
    assert!(line.contains(&format!("after={}", fields[4])), "{line}");
    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
}
