//! What the two phases of a fleet reload cost: the time of a fleet reload of 3 and of 5 node
//! processes on 127.0.0.1, against a single-node reload of the same config, in the same run.
//!
//! `cargo bench --bench fleet` starts the nodes from the `swapvisor` binary, alternates reloads
//! between two versions (so none is `unchanged`), and prints the median and p90 of each, then
//! `RATIO` lines: fleet / single-node median (target: under 2), and fleet / every node reloaded
//! on its own at once (a fleet without the two phases: the same total work, which on a 2-core
//! machine running 3 or 5 nodes is much of the difference). Knobs: FLEET_RELOADS (40).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn config(version: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:${{PORT}}" }} }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: greet, type: step.set, config: {{ values: {{ message: "hello {{{{ request.query.name }}}}" }} }} }}
      - {{ name: r, type: step.json_response, config: {{ body: {{ message: "{{{{ greet.message }}}}", version: "{version}" }} }} }}
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One node process, killed when dropped.
struct Node {
    child: Child,
    admin: String,
    cluster: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &std::path::Path, index: usize, peer: Option<&str>) -> Node {
    let config_path = dir.join(format!("node{index}.yaml"));
    std::fs::write(&config_path, config("v0")).expect("write config");
    let (admin_port, cluster_port) = (free_port(), free_port());
    let admin = format!("127.0.0.1:{admin_port}");
    let cluster = format!("127.0.0.1:{cluster_port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_swapvisor"));
    command
        .args(["--log", "warn", "run"])
        .arg(&config_path)
        .args(["--admin", &admin, "--cluster-listen", &cluster])
        .arg("--cluster-cookie-file")
        .arg(dir.join("cookie"))
        .env("PORT", free_port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(peer) = peer {
        command.args(["--cluster-peers", peer]);
    }
    let child = command.spawn().expect("start a node");
    let node = Node {
        child,
        admin,
        cluster,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while post(&node.admin, "GET", "/healthz", "").is_err() {
        assert!(Instant::now() < deadline, "node {index} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

/// One request on a fresh connection; the status code and body.
fn post(address: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((code, body))
}

fn members(node: &Node) -> usize {
    post(&node.admin, "GET", "/api/v1/admin/fleet/status", "")
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["nodes"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// `count` nodes joined through the first.
fn fleet(dir: &std::path::Path, count: usize) -> Vec<Node> {
    let first = start_node(dir, 0, None);
    let peer = first.cluster.clone();
    let mut nodes = vec![first];
    for i in 1..count {
        nodes.push(start_node(dir, i, Some(&peer)));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while members(&nodes[0]) < count {
        assert!(Instant::now() < deadline, "the fleet never formed");
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes
}

/// Times `reloads` rounds in which every node reloads on its own, all at once, alternating two
/// versions: a fleet reload without the two phases.
fn time_independent_reloads(nodes: &[Node], reloads: usize) -> Vec<Duration> {
    (0..reloads)
        .map(|i| {
            let text = config(&format!("v{}", i % 2 + 1));
            let started = Instant::now();
            std::thread::scope(|scope| {
                for node in nodes {
                    let text = &text;
                    scope.spawn(move || {
                        let answer = post(&node.admin, "POST", "/api/v1/admin/engine/reload", text);
                        let (code, body) = answer.expect("answers");
                        assert!(code == 200, "{code} {body}");
                    });
                }
            });
            started.elapsed()
        })
        .collect()
}

/// Times `reloads` reloads through `path` on `node`, alternating two versions; each must
/// answer `expect`.
fn time_reloads(node: &Node, path: &str, reloads: usize, expect: &str) -> Vec<Duration> {
    (0..reloads)
        .map(|i| {
            let text = config(&format!("v{}", i % 2 + 1));
            let started = Instant::now();
            let (code, body) = post(&node.admin, "POST", path, &text).expect("answers");
            let took = started.elapsed();
            assert!(
                code == 200 && body.contains(&format!("\"status\":\"{expect}\"")),
                "{path}: {code} {body}"
            );
            took
        })
        .collect()
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let reloads: usize = std::env::var("FLEET_RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("cookie"), "bench-fleet-cookie").expect("write the cookie");
    let mut results = Vec::new();
    for count in [3, 5] {
        let nodes = fleet(dir.path(), count);
        // The single-node reload of the same config, on the same machine in the same minute:
        // the first node's own reload (the others are left on another version meanwhile).
        let mut single = time_reloads(
            &nodes[0],
            "/api/v1/admin/engine/reload",
            reloads,
            "activated",
        );
        let mut independent = time_independent_reloads(&nodes, reloads);
        let mut fleet = time_reloads(
            &nodes[0],
            "/api/v1/admin/fleet/reload",
            reloads,
            "activated",
        );
        let (single_median, independent_median, fleet_median) = (
            percentile(&mut single, 0.5),
            percentile(&mut independent, 0.5),
            percentile(&mut fleet, 0.5),
        );
        println!(
            "{count} nodes: single-node reload median {:?} p90 {:?}; every node on its own at once median {:?} p90 {:?}; fleet reload median {:?} p90 {:?}",
            single_median,
            percentile(&mut single, 0.9),
            independent_median,
            percentile(&mut independent, 0.9),
            fleet_median,
            percentile(&mut fleet, 0.9)
        );
        let ratio = |over: Duration| fleet_median.as_secs_f64() / over.as_secs_f64();
        results.push((count, ratio(single_median), ratio(independent_median)));
    }
    for (count, single, independent) in results {
        println!(
            "RATIO fleet reload / single-node reload, {count} nodes, median: {single:.2} (target < 2)"
        );
        println!(
            "RATIO fleet reload / every node reloaded on its own at once, {count} nodes, median: {independent:.2}"
        );
    }
}
