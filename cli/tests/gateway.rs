// Longer than 450 lines on purpose: one file holds the proxy's contract end to end (balancing,
// health, retries, carried pools, tunnels and streaming), each test against real backends.
//! The gateway: `http.upstream` and `step.proxy` in front of real backends on 127.0.0.1, each
//! backend counting the connections it accepts and the requests it sees.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use swapvisor::config::Config;
use swapvisor::{Registry, ReloadOutcome, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Backend, echo, get, open_tunnel, request_full};

/// A config with one upstream over `targets` (`extra` is more of its settings), a proxied
/// `/api/{*rest}` route, a `/ws` route, and `/version` answering `version`.
fn gateway(targets: &[&Backend], extra: &str, ws_extra: &str, version: &str) -> Config {
    let targets: Vec<String> = targets
        .iter()
        .map(|b| format!("\"{}\"", b.target()))
        .collect();
    let targets = targets.join(", ");
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
  - name: api
    type: http.upstream
    config: {{ targets: [{targets}] {extra} }}
pipelines:
  proxied:
    trigger: {{ type: http, config: {{ server: web, method: "*", path: "/api/{{*rest}}" }} }}
    steps:
      - name: forward
        type: step.proxy
        config:
          upstream: api
          path: "/{{{{ request.params.rest }}}}"
          headers:
            request: {{ set: {{ x-gateway: "swapvisor {{{{ request.method }}}}" }}, remove: [x-internal] }}
            response: {{ set: {{ x-proxied: "yes" }} }}
  ws:
    trigger: {{ type: http, config: {{ server: web, path: /ws }} }}
    steps:
      - {{ name: tunnel, type: step.proxy, config: {{ upstream: api {ws_extra} }} }}
  version:
    trigger: {{ type: http, config: {{ server: web, path: /version }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
"#
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

async fn start(config: Config) -> (Runtime, String) {
    let runtime = Runtime::start(config, Registry::with_builtins())
        .await
        .expect("the gateway config activates");
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    (runtime, format!("http://{address}"))
}

/// The upstream `api`'s status.
async fn upstream_status(runtime: &Runtime) -> Value {
    let status = runtime.status().await.unwrap();
    let module = status.modules.iter().find(|m| m.name == "api").unwrap();
    Value::Object(module.details.clone())
}

/// Waits (up to 10 s) until `check` holds for the upstream's status.
async fn wait_for_upstream(runtime: &Runtime, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = upstream_status(runtime).await;
        if check(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream status never matched: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_proxy_forwards_path_query_headers_and_body_and_strips_hop_by_hop_headers() {
    let backend = Backend::start("a").await;
    let (runtime, base) = start(gateway(&[&backend], "", "", "v1")).await;
    let (status, headers, body) = request_full(
        "POST",
        &format!("{base}/api/v1/items?sort=name"),
        &[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "must not pass"),
            ("x-internal", "must not pass"),
            ("x-forwarded-for", "10.0.0.1"),
            ("content-type", "text/plain"),
        ],
        "hello backend",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "a");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/v1/items");
    assert_eq!(body["query"], "sort=name");
    assert_eq!(body["body"], "hello backend");
    let sent = &body["headers"];
    assert_eq!(sent["x-gateway"], "swapvisor POST");
    assert_eq!(sent["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(sent["x-forwarded-proto"], "http");
    assert_eq!(sent["x-forwarded-host"], base.trim_start_matches("http://"));
    assert!(sent.get("x-hop").is_none(), "{sent}");
    assert!(sent.get("x-internal").is_none(), "{sent}");
    assert_eq!(headers["x-proxied"], "yes");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn round_robin_alternates_and_least_requests_avoids_the_busy_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (runtime, base) = start(gateway(&[&a, &b], "", "", "v1")).await;
    let mut served = Vec::new();
    for _ in 0..10 {
        let (status, body) = get(&format!("{base}/api/who")).await;
        assert_eq!(status, 200, "{body}");
        served.push(body["backend"].as_str().unwrap().to_owned());
    }
    assert_eq!(a.state.requests.load(Ordering::SeqCst), 5, "{served:?}");
    assert_eq!(b.state.requests.load(Ordering::SeqCst), 5, "{served:?}");
    assert!(served.windows(2).all(|w| w[0] != w[1]), "{served:?}");

    // Least requests: one request hangs on a target; every other request goes to the other.
    let outcome = runtime
        .reload(gateway(&[&a, &b], ", balance: least_requests", "", "v1"))
        .await
        .unwrap();
    assert_eq!(outcome.outcome, ReloadOutcome::Activated { generation: 2 });
    let slow = tokio::spawn({
        let base = base.clone();
        async move { get(&format!("{base}/api/slow")).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.state.waiting.load(Ordering::SeqCst) + b.state.waiting.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let busy = if a.state.waiting.load(Ordering::SeqCst) == 1 {
        "a"
    } else {
        "b"
    };
    for _ in 0..6 {
        let (_, body) = get(&format!("{base}/api/who")).await;
        assert_ne!(body["backend"], busy, "a request went to the busy target");
    }
    a.state.release_slow.notify_waiters();
    b.state.release_slow.notify_waiters();
    assert_eq!(slow.await.unwrap().0, 200);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_killed_backend_is_retried_around_then_ejected_and_no_request_fails() {
    let (a, mut b) = (Backend::start("a").await, Backend::start("b").await);
    let checks = ", healthCheck: { path: /health, interval: 50ms, timeout: 1s, unhealthyAfter: 1 }";
    let (runtime, base) = start(gateway(&[&a, &b], checks, "", "v1")).await;
    wait_for_upstream(&runtime, |s| s["targets"][1]["healthy"] == true).await;
    b.kill();
    // Before and after the check marks it, every request is answered: one never sent to the
    // killed target is sent again to the live one.
    for i in 0..20 {
        let (status, body) = get(&format!("{base}/api/who?i={i}")).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["backend"], "a");
    }
    let status = wait_for_upstream(&runtime, |s| s["targets"][1]["healthy"] == false).await;
    assert_eq!(status["targets"][0]["healthy"], true, "{status}");
    let after = a.state.requests.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(get(&format!("{base}/api/who")).await.0, 200);
    }
    assert_eq!(a.state.requests.load(Ordering::SeqCst), after + 10);

    // /metrics shows each target's health, in-flight and requests by outcome.
    let status = runtime.status().await.unwrap();
    let text = swapvisor::admin::Metrics::default().render(&status, &runtime);
    let (ta, tb) = (a.target(), b.target());
    let a_ok = a.state.requests.load(Ordering::SeqCst);
    common::assert_has_lines(
        &text,
        [
            format!(r#"swapvisor_upstream_target_healthy{{module="api",target="{ta}"}} 1"#),
            format!(r#"swapvisor_upstream_target_healthy{{module="api",target="{tb}"}} 0"#),
            format!(r#"swapvisor_upstream_in_flight{{module="api",target="{ta}"}} 0"#),
            format!(
                r#"swapvisor_upstream_requests_total{{module="api",target="{ta}",outcome="ok"}} {a_ok}"#
            ),
            format!(
                r#"swapvisor_upstream_requests_total{{module="api",target="{tb}",outcome="server_error"}} 0"#
            ),
        ],
    );
    let connect_failed = format!(
        r#"swapvisor_upstream_requests_total{{module="api",target="{tb}",outcome="connect_failed"}} "#
    );
    let failed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(connect_failed.as_str()))
        .and_then(|n| n.parse().ok())
        .expect("the killed target's connect failures are counted");
    let retries = format!(r#"swapvisor_upstream_retries_total{{module="api"}} {failed}"#);
    assert!(
        text.lines().any(|l| l == retries),
        "{retries}\nnot in\n{text}"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_target_unhealthy_answers_503_at_once() {
    let mut a = Backend::start("a").await;
    let checks = ", healthCheck: { path: /health, interval: 50ms, unhealthyAfter: 1 }";
    let (runtime, base) = start(gateway(&[&a], checks, "", "v1")).await;
    a.state.unhealthy.store(true, Ordering::SeqCst);
    wait_for_upstream(&runtime, |s| s["targets"][0]["healthy"] == false).await;
    let seen = a.state.requests.load(Ordering::SeqCst);
    let (status, body) = get(&format!("{base}/api/who")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "no target of upstream \"api\" is healthy");
    assert_eq!(
        a.state.requests.load(Ordering::SeqCst),
        seen,
        "nothing reached the backend"
    );
    a.kill();
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_that_reached_the_backend_is_resent_only_when_idempotent() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (runtime, base) = start(gateway(&[&a, &b], "", "", "v1")).await;
    for backend in [&a, &b] {
        backend.state.drop_requests.store(true, Ordering::SeqCst);
    }
    let total =
        || a.state.requests.load(Ordering::SeqCst) + b.state.requests.load(Ordering::SeqCst);
    let (status, _, body) = request_full("POST", &format!("{base}/api/orders"), &[], "one order")
        .await
        .unwrap();
    assert_eq!(status, 502, "{body}");
    assert_eq!(total(), 1, "a POST that reached a backend was sent again");
    let (status, _, _) = request_full("PUT", &format!("{base}/api/orders/1"), &[], "x")
        .await
        .unwrap();
    assert_eq!(status, 502);
    assert_eq!(total(), 3, "an idempotent PUT is tried on the other target");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unchanged_upstream_opens_no_new_backend_connection_across_50_reloads() {
    let backend = Backend::start("a").await;
    let (runtime, base) = start(gateway(&[&backend], "", "", "v0")).await;
    assert_eq!(get(&format!("{base}/api/who")).await.0, 200);
    assert_eq!(backend.state.accepted.load(Ordering::SeqCst), 1);
    for i in 1..=50 {
        let version = format!("v{i}");
        let outcome = runtime
            .reload(gateway(&[&backend], "", "", &version))
            .await
            .unwrap();
        assert_eq!(
            outcome.outcome,
            ReloadOutcome::Activated { generation: i + 1 },
            "reload {i}"
        );
        assert_eq!(get(&format!("{base}/version")).await.1["version"], version);
        assert_eq!(get(&format!("{base}/api/who")).await.0, 200, "reload {i}");
    }
    assert_eq!(
        backend.state.accepted.load(Ordering::SeqCst),
        1,
        "a reload that did not touch the upstream opened a backend connection"
    );
    // A reload that changes the upstream gets a pool of its own.
    let changed = gateway(&[&backend], ", maxIdlePerTarget: 8", "", "v51");
    assert_eq!(
        runtime.reload(changed).await.unwrap().outcome,
        ReloadOutcome::Activated { generation: 52 }
    );
    assert_eq!(get(&format!("{base}/api/who")).await.0, 200);
    assert_eq!(backend.state.accepted.load(Ordering::SeqCst), 2);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tunnel_through_an_unchanged_route_survives_50_reloads_and_a_changed_one_closes() {
    let backend = Backend::start("a").await;
    let (runtime, base) = start(gateway(&[&backend], "", "", "v0")).await;
    let mut tunnel = open_tunnel(&base, "/ws").await;
    echo(&mut tunnel, "frame 0").await;
    for i in 1..=50 {
        let version = format!("v{i}");
        let outcome = runtime
            .reload(gateway(&[&backend], "", "", &version))
            .await
            .unwrap();
        assert_eq!(
            outcome.outcome,
            ReloadOutcome::Activated { generation: i + 1 },
            "reload {i}"
        );
        echo(&mut tunnel, &format!("frame {i}")).await;
    }
    let status = upstream_status(&runtime).await;
    assert_eq!(
        status["tunnels"],
        json!({"open": 1, "opened": 1, "closedByReload": 0})
    );

    // A reload that changes the tunnel's route closes it once the old engine is gone.
    let changed = gateway(&[&backend], "", ", timeout: 5s", "v51");
    assert_eq!(
        runtime.reload(changed).await.unwrap().outcome,
        ReloadOutcome::Activated { generation: 52 }
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tunnel.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the tunnel of a changed route stayed open");
    let status = wait_for_upstream(&runtime, |s| s["tunnels"]["open"] == 0).await;
    assert_eq!(status["tunnels"]["closedByReload"], 1, "{status}");
    runtime.shutdown().await.unwrap();
}

/// The process's peak resident size in KiB, and a reset of it.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
}

#[tokio::test]
async fn a_100_mib_body_streams_both_ways_with_memory_bounded() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let backend = Backend::start("a").await;
    let (runtime, base) = start(gateway(&[&backend], "", "", "v1")).await;
    reset_peak_rss();
    let before = peak_rss_kib();

    // Upload: a chunked body made as it is sent, counted by the backend.
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"POST /api/count HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'u'; 256 * 1024];
    for _ in 0..(SIZE / chunk.len() as u64) {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("\"bytes\":{SIZE}")), "{answer}");

    // Download: counted here as it arrives.
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request =
        format!("GET /api/download?n={SIZE} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    // The chunked framing adds a little to the body's bytes.
    assert!(
        received > SIZE && received < SIZE + SIZE / 100,
        "{received}"
    );

    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 48,
        "the peak RSS grew by {grown_mib} MiB for a 100 MiB body each way"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn upstream_and_proxy_config_errors_name_their_place() {
    let backend = Backend::start("a").await;
    let base = gateway(&[&backend], "", "", "v1");
    let registry = Registry::with_builtins();
    let yaml = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
  - { name: api, type: http.upstream, config: { targets: ["127.0.0.1", "127.0.0.1:1", "127.0.0.1:1"], balance: random, retries: { attempts: 0 } } }
pipelines: {}
"#;
    let errors = swapvisor::Engine::build(&Config::parse(yaml.as_bytes()).unwrap(), &registry)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains(r#"modules[1] (name "api").config.balance: unknown variant "random", expected "round_robin" or "least_requests""#),
        "{errors}"
    );
    let yaml = r#"
modules:
  - { name: api, type: http.upstream, config: { targets: ["127.0.0.1", "127.0.0.1:1", "127.0.0.1:1"], retries: { attempts: 0 } } }
"#;
    let errors = swapvisor::Engine::build(&Config::parse(yaml.as_bytes()).unwrap(), &registry)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        r#"modules[0] (name "api").config.targets[0]: "127.0.0.1" has no port; a target is host:port"#,
        r#"modules[0] (name "api").config.targets[2]: "127.0.0.1:1" is listed twice"#,
        r#"modules[0] (name "api").config.retries.attempts: 0 is out of range"#,
    ] {
        assert!(errors.contains(expected), "{expected}\nnot in\n{errors}");
    }
    let yaml = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  p:
    steps:
      - { name: a, type: step.proxy, config: { upstream: web } }
      - { name: b, type: step.proxy, config: { upstream: nowhere } }
"#;
    let errors = swapvisor::Engine::build(&Config::parse(yaml.as_bytes()).unwrap(), &registry)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        r#"pipelines.p.steps[0] (name "a").config.upstream: module "web" is a http.server, not a http.upstream (http.upstream modules: none)"#,
        r#"pipelines.p.steps[1] (name "b").config.upstream: unknown http.upstream "nowhere""#,
    ] {
        assert!(errors.contains(expected), "{expected}\nnot in\n{errors}");
    }
    drop(base);
}

#[tokio::test]
async fn http_call_answers_later_steps_through_an_upstream_or_a_fixed_url() {
    let backend = Backend::start("a").await;
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
  - {{ name: api, type: http.upstream, config: {{ targets: ["{target}"] }} }}
pipelines:
  lookup:
    trigger: {{ type: http, config: {{ server: web, path: "/users/{{id}}" }} }}
    steps:
      - name: user
        type: step.http_call
        config:
          method: POST
          upstream: api
          path: "/users/{{{{ request.params.id }}}}"
          headers: {{ x-caller: "gateway" }}
          body: {{ id: "{{{{ request.params.id }}}}", tags: [a, b] }}
      - name: direct
        type: step.http_call
        config: {{ url: "http://{target}/direct?q={{{{ request.query.q }}}}" }}
      - name: failing
        type: step.http_call
        config: {{ upstream: api, path: /fail }}
      - name: r
        type: step.json_response
        config:
          body:
            status: "{{{{ user.status }}}}"
            path: "{{{{ user.body.path }}}}"
            sent: "{{{{ user.body.body }}}}"
            caller: "{{{{ user.body.headers.x-caller }}}}"
            type: "{{{{ user.body.headers.content-type }}}}"
            query: "{{{{ direct.body.query }}}}"
            failed: "{{{{ failing.status }}}}"
"#,
        target = backend.target()
    );
    let (runtime, base) = start(Config::parse(yaml.as_bytes()).unwrap()).await;
    let (status, body) = get(&format!("{base}/users/42?q=ada")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "status": 200,
            "path": "/users/42",
            "sent": r#"{"id":"42","tags":["a","b"]}"#,
            "caller": "gateway",
            "type": "application/json",
            "query": "q=ada",
            "failed": 500,
        })
    );
    runtime.shutdown().await.unwrap();

    let registry = Registry::with_builtins();
    let yaml = r#"
pipelines:
  p:
    steps:
      - { name: a, type: step.http_call, config: { url: "http://{{ request.query.host }}/x" } }
      - { name: b, type: step.http_call, config: { url: "https://example.com/" } }
      - { name: c, type: step.http_call, config: { method: "BAD METHOD", url: "http://127.0.0.1:1/" } }
      - { name: d, type: step.http_call, config: {} }
"#;
    let errors = swapvisor::Engine::build(&Config::parse(yaml.as_bytes()).unwrap(), &registry)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        r#"pipelines.p.steps[0] (name "a").config.url: "http://{{ request.query.host }}/x" has a template in its host: the host is fixed at build"#,
        r#"pipelines.p.steps[1] (name "b").config.url: "https://example.com/" must start with http://"#,
        r#"pipelines.p.steps[2] (name "c").config.method: "BAD METHOD" is not an HTTP method"#,
        r#"pipelines.p.steps[3] (name "d").config: give either upstream (an http.upstream module, with an optional path) or url"#,
    ] {
        assert!(errors.contains(expected), "{expected}\nnot in\n{errors}");
    }
}

#[tokio::test]
async fn a_buffered_proxy_lets_earlier_steps_read_the_body_and_forwards_it_as_it_arrived() {
    let backend = Backend::start("a").await;
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
  - {{ name: api, type: http.upstream, config: {{ targets: ["{target}"] }} }}
pipelines:
  orders:
    trigger: {{ type: http, config: {{ server: web, method: POST, path: /orders }} }}
    steps:
      - {{ name: check, type: step.set, config: {{ values: {{ item: "{{{{ request.body.item }}}}" }} }} }}
      - name: forward
        type: step.proxy
        config: {{ upstream: api, buffer: true, headers: {{ request: {{ set: {{ x-item: "{{{{ check.item }}}}" }} }} }} }}
"#,
        target = backend.target()
    );
    let (runtime, base) = start(Config::parse(yaml.as_bytes()).unwrap()).await;
    let sent = r#"{"item": "tea",   "count": 2}"#;
    let (status, _, body) = request_full("POST", &format!("{base}/orders"), &[], sent)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-item"], "tea");
    assert_eq!(body["body"], sent, "the body goes on byte for byte");
    runtime.shutdown().await.unwrap();
}
