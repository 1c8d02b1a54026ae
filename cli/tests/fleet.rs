// Longer than 450 lines on purpose: one test per fleet scenario, sharing the multi-node `Fleet` fixture defined here.
//! Fleet reloads across real node processes on 127.0.0.1: all or nothing.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::{Swapvisor, TempConfig, get, request_with};

/// A config whose server listens on `${PORT}` of each node, so one text serves every node.
fn config(version: &str, extra: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:${{PORT}}" }} }}
{extra}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
"#
    )
}

/// One node: its process, its own config file and port, and its addresses.
struct Node {
    process: Swapvisor,
    _config: TempConfig,
    web: String,
    admin: String,
    cluster: String,
}

impl Node {
    fn start(cookie: &std::path::Path, peers: &[&str], env: &[(&str, &str)]) -> Node {
        // PORT=0: every node's server gets an ephemeral port of its own from one config text
        // (and keeps it across reloads: the server's name stays).
        let port = "0".to_owned();
        let config = TempConfig::new(&config("v1", ""));
        let mut args = vec![
            "run",
            config.as_str(),
            "--admin",
            "127.0.0.1:0",
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-cookie-file",
            cookie.to_str().unwrap(),
        ];
        let peers = peers.join(",");
        if !peers.is_empty() {
            args.extend(["--cluster-peers", peers.as_str()]);
        }
        let mut all_env = vec![("PORT", port.as_str())];
        all_env.extend_from_slice(env);
        let mut process = Swapvisor::start_with_env(&args, &all_env);
        let (web, admin) = process.wait_until_up_with_admin("web");
        let joined = process.wait_for_line("joined the fleet", Duration::from_secs(10));
        let cluster = joined[joined.find("cluster=").unwrap() + 8..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        Node {
            process,
            _config: config,
            web,
            admin,
            cluster,
        }
    }

    /// Kills the process at once (SIGKILL), as a crash or a lost machine would.
    fn kill(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    async fn engine_status(&self) -> Value {
        get(&format!("{}/api/v1/admin/engine/status", self.admin))
            .await
            .1
    }

    /// Waits until this node's engine status satisfies `check`.
    async fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.engine_status().await;
            if check(&status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never happened: {status}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Fleet {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Fleet {
    /// `count` nodes, each but the first joined through the first, with `env[i]` for node i.
    async fn start(count: usize, env: &[&[(&str, &str)]]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let cookie = dir.path().join("cookie");
        std::fs::write(&cookie, "fleet-test-cookie\n").unwrap();
        let first = Node::start(&cookie, &[], env.first().copied().unwrap_or(&[]));
        let mut nodes = vec![first];
        for i in 1..count {
            let peer = nodes[0].cluster.clone();
            nodes.push(Node::start(
                &cookie,
                &[&peer],
                env.get(i).copied().unwrap_or(&[]),
            ));
        }
        let fleet = Fleet { dir, nodes };
        fleet.wait_for_members(count).await;
        fleet
    }

    fn cookie(&self) -> std::path::PathBuf {
        self.dir.path().join("cookie")
    }

    /// Waits until the first node's fleet status lists `count` nodes.
    async fn wait_for_members(&self, count: usize) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status().await;
            if status["nodes"].as_array().map(Vec::len) == Some(count) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fleet never reached {count} nodes: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status(&self) -> Value {
        let (code, body) = get(&format!(
            "{}/api/v1/admin/fleet/status",
            self.nodes[0].admin
        ))
        .await;
        assert_eq!(code, 200, "{body}");
        body
    }

    async fn reload(&self, text: &str) -> (u16, Value) {
        request_with(
            "POST",
            &format!("{}/api/v1/admin/fleet/reload", self.nodes[0].admin),
            &[],
            text.to_owned(),
        )
        .await
        .unwrap()
    }

    async fn versions(&self) -> Vec<String> {
        let mut versions = Vec::new();
        for node in &self.nodes {
            let (code, body) = get(&format!("{}/hello", node.web)).await;
            assert_eq!(code, 200, "{body}");
            versions.push(body["version"].as_str().unwrap().to_owned());
        }
        versions
    }

    fn statuses<'a>(answer: &'a Value, part: &str, field: &str) -> Vec<&'a str> {
        answer["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n[part][field].as_str().unwrap_or("-"))
            .collect()
    }
}

#[tokio::test]
async fn a_good_config_activates_on_every_node_and_the_fleet_agrees() {
    let fleet = Fleet::start(3, &[]).await;
    let (code, answer) = fleet.reload(&config("v2", "")).await;
    assert_eq!(
        (code, answer["status"].clone()),
        (200, json!("activated")),
        "{answer}"
    );
    assert_eq!(answer["fleetGeneration"], 1);
    assert_eq!(
        Fleet::statuses(&answer, "prepare", "status"),
        ["prepared"; 3]
    );
    assert_eq!(
        Fleet::statuses(&answer, "commit", "outcome"),
        ["activated"; 3]
    );
    assert_eq!(fleet.versions().await, ["v2", "v2", "v2"]);
    let status = fleet.status().await;
    assert_eq!(status["agreed"], true, "{status}");
    let generations: Vec<(u64, u64)> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["generation"].as_u64().unwrap(),
                n["fleetGeneration"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(generations, [(2, 1); 3]);
    // Each node's own status shows its fleet generation beside its config hash.
    for node in &fleet.nodes {
        let status = node.engine_status().await;
        assert_eq!(
            (
                status["fleet"]["node"].as_str(),
                status["fleet"]["fleetGeneration"].as_u64()
            ),
            (Some(node.cluster.as_str()), Some(1)),
            "{status}"
        );
        assert_eq!(
            status["configHash"],
            answer["nodes"][0]["prepare"]["fingerprint"]
        );
    }
    // A per-node reload still works, and shows up as a fleet that disagrees.
    let (code, _) = request_with(
        "POST",
        &format!("{}/api/v1/admin/engine/reload", fleet.nodes[1].admin),
        &[],
        config("v2-local", ""),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let status = fleet.status().await;
    assert_eq!(status["agreed"], false, "{status}");
}

#[tokio::test]
async fn a_node_that_cannot_build_the_config_aborts_the_reload_everywhere() {
    // Only the first two nodes have GREETING.
    let with: &[(&str, &str)] = &[("GREETING", "hi")];
    let fleet = Fleet::start(3, &[with, with, &[]]).await;
    let lacking = fleet.nodes[2].cluster.clone();
    let needs_greeting = config("v2", "").replace(
        "version: \"v2\"",
        "version: \"v2\", greeting: \"${GREETING}\"",
    );
    let (code, answer) = fleet.reload(&needs_greeting).await;
    assert_eq!(
        (code, answer["status"].clone()),
        (422, json!("aborted")),
        "{answer}"
    );
    let failed: Vec<&Value> = answer["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["prepare"]["status"] != "prepared")
        .collect();
    assert_eq!(failed.len(), 1, "{answer}");
    assert_eq!(failed[0]["node"], lacking.as_str());
    assert!(
        failed[0]["prepare"]["error"]
            .as_str()
            .unwrap()
            .contains("GREETING"),
        "{answer}"
    );
    // Nothing changed anywhere, and nothing is left held.
    assert_eq!(fleet.versions().await, ["v1", "v1", "v1"]);
    for node in &fleet.nodes {
        let (_, status) = get(&format!("{}/api/v1/admin/engine/status", node.admin)).await;
        assert_eq!(status["generation"], 1, "{status}");
    }
    let status = fleet.status().await;
    assert_eq!(status["agreed"], true, "{status}");
}

#[tokio::test]
async fn a_node_that_fails_to_start_returns_the_fleet_to_the_previous_version() {
    // The new config moves each node to the port its NEXT_PORT names: an ephemeral one (the
    // same socket) for two of them, and for the third a port this test holds, so that node's
    // start fails and its own reload rolls back.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port().to_string();
    let env: [&[(&str, &str)]; 3] = [
        &[("NEXT_PORT", "0")],
        &[("NEXT_PORT", "0")],
        &[("NEXT_PORT", taken.as_str())],
    ];
    let fleet = Fleet::start(3, &env).await;
    let failing = fleet.nodes[2].cluster.clone();
    let moved = config("v2", "").replace("${PORT}", "${NEXT_PORT}");
    let (code, answer) = fleet.reload(&moved).await;
    assert_eq!(
        (code, answer["status"].clone()),
        (500, json!("rolled_back")),
        "{answer}"
    );
    assert_eq!(answer["fleetGeneration"], 0, "{answer}");
    for node in answer["nodes"].as_array().unwrap() {
        if node["node"] == failing.as_str() {
            assert_eq!(node["commit"]["outcome"], "rolled_back", "{answer}");
            assert!(node.get("rollback").is_none(), "{answer}");
        } else {
            assert_eq!(node["commit"]["outcome"], "activated", "{answer}");
            assert_eq!(node["rollback"]["outcome"], "activated", "{answer}");
        }
    }
    // Every node serves the previous version on its previous port.
    assert_eq!(fleet.versions().await, ["v1", "v1", "v1"]);
    let status = fleet.status().await;
    assert_eq!(status["agreed"], true, "{status}");
}

#[tokio::test]
async fn a_node_with_the_wrong_cookie_is_refused() {
    let mut fleet = Fleet::start(1, &[]).await;
    let wrong = fleet.dir.path().join("wrong-cookie");
    std::fs::write(&wrong, "not-the-fleet-cookie\n").unwrap();
    let intruder = Node::start(&wrong, &[&fleet.nodes[0].cluster], &[]);
    // The node that checks the intruder's answer to its challenge logs the refusal.
    fleet.nodes[0]
        .process
        .wait_for_line("authentication failure", Duration::from_secs(10));
    // Neither side counts the other as a member.
    let status = fleet.status().await;
    assert_eq!(status["nodes"].as_array().unwrap().len(), 1, "{status}");
    let (_, alone) = get(&format!("{}/api/v1/admin/fleet/status", intruder.admin)).await;
    assert_eq!(alone["nodes"].as_array().unwrap().len(), 1, "{alone}");
    let (code, answer) = request_with(
        "POST",
        &format!("{}/api/v1/admin/fleet/reload", intruder.admin),
        &[],
        config("v2", ""),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, answer["nodes"].as_array().unwrap().len()),
        (200, 1),
        "{answer}"
    );
    assert_eq!(fleet.versions().await, ["v1"]);
}

/// A fleet reload in the background, answered when it ends.
fn reload_in_background(fleet: &Fleet, text: String) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = format!("{}/api/v1/admin/fleet/reload", fleet.nodes[0].admin);
    tokio::spawn(async move { request_with("POST", &url, &[], text).await.unwrap() })
}

#[tokio::test]
async fn a_node_lost_in_prepare_aborts_one_lost_in_commit_catches_up_when_it_returns() {
    let mut fleet = Fleet::start(3, &[]).await;
    let third = fleet.nodes[2].cluster.clone();

    // Lost during the prepare (every build takes a second): the reload aborts, nothing changes.
    let slow_build = config(
        "v2",
        "  - { name: slow, type: fault.inject, config: { failOn: build, mode: slow, delay: 1s } }",
    );
    let reload = reload_in_background(&fleet, slow_build);
    fleet.nodes[2]
        .wait_for("the prepare's build", |s| s["childActors"] == 2)
        .await;
    fleet.nodes[2].kill();
    let (code, answer) = reload.await.unwrap();
    assert_eq!(
        (code, answer["status"].clone()),
        (422, json!("aborted")),
        "{answer}"
    );
    let verdicts: Vec<(&str, &str)> = answer["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap(),
                n["prepare"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        verdicts.contains(&(third.as_str(), "unreachable")),
        "{answer}"
    );
    fleet.nodes.truncate(2);
    assert_eq!(fleet.versions().await, ["v1", "v1"]);
    for node in &fleet.nodes {
        assert_eq!(
            node.engine_status().await["prepared"],
            0,
            "nothing stays held"
        );
    }

    // Back, then lost during the commit (every start takes a second): the others keep the
    // commit, the answer says the fleet diverged, and the node catches up when it returns.
    let cookie = fleet.cookie();
    let first = fleet.nodes[0].cluster.clone();
    fleet.nodes.push(Node::start(&cookie, &[&first], &[]));
    fleet.wait_for_members(3).await;
    let slow_start = config(
        "v3",
        "  - { name: slow, type: fault.inject, config: { failOn: start, mode: slow, delay: 1s } }",
    );
    let reload = reload_in_background(&fleet, slow_start.clone());
    fleet.nodes[2]
        .wait_for("the commit's swap", |s| {
            s["state"] == "reloading" && s["prepared"] == 0
        })
        .await;
    fleet.nodes[2].kill();
    let (code, answer) = reload.await.unwrap();
    assert_eq!(
        (code, answer["status"].clone()),
        (500, json!("diverged")),
        "{answer}"
    );
    assert_eq!(answer["fleetGeneration"], 1, "{answer}");
    fleet.nodes.truncate(2);
    assert_eq!(fleet.versions().await, ["v3", "v3"]);

    // It returns with the config it started with (v1 on disk) and takes the fleet's.
    let mut returned = Node::start(&cookie, &[&first], &[]);
    let line = returned
        .process
        .wait_for_line("caught up with the fleet", Duration::from_secs(20));
    assert!(line.contains("fleet_generation=1"), "{line}");
    fleet.nodes.push(returned);
    assert_eq!(fleet.versions().await, ["v3", "v3", "v3"]);
    let status = fleet.wait_for_members(3).await;
    assert_eq!(status["agreed"], true, "{status}");
}

#[tokio::test]
async fn twenty_fleet_reloads_under_load_fail_no_request() {
    let fleet = Fleet::start(3, &[]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = fleet
        .nodes
        .iter()
        .map(|node| {
            let (url, stop) = (format!("{}/hello", node.web), stop.clone());
            tokio::spawn(async move {
                let client = common::client();
                let (mut served, mut failed) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match common::request(&client, "GET", &url, "").await {
                        Ok((200, _)) => served += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (served, failed, client.connections())
            })
        })
        .collect();
    for version in 2..=21 {
        let (code, answer) = fleet.reload(&config(&format!("v{version}"), "")).await;
        assert_eq!(
            (code, answer["status"].clone()),
            (200, json!("activated")),
            "{answer}"
        );
        assert_eq!(answer["fleetGeneration"], version - 1);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for load in loads {
        let (served, failed, connections) = load.await.unwrap();
        assert_eq!(
            failed,
            Vec::<String>::new(),
            "requests failed under fleet reloads"
        );
        assert!(served > 0);
        assert_eq!(connections, 1, "a connection was closed by a reload");
    }
    assert_eq!(fleet.versions().await, ["v21", "v21", "v21"]);
}

#[tokio::test]
async fn two_coordinators_at_once_never_both_commit() {
    let fleet = Fleet::start(3, &[]).await;
    // Both prepares take a second on every node, so they overlap.
    let slow = |version: &str| {
        config(
            version,
            "  - { name: slow, type: fault.inject, config: { failOn: build, mode: slow, delay: 1s } }",
        )
    };
    let first = reload_in_background(&fleet, slow("v2"));
    let second = tokio::spawn({
        let url = format!("{}/api/v1/admin/fleet/reload", fleet.nodes[1].admin);
        let text = slow("v3");
        async move { request_with("POST", &url, &[], text).await.unwrap() }
    });
    let (first, second) = (first.await.unwrap().1, second.await.unwrap().1);
    let answers = [&first, &second];
    // Every node answered each prepare: prepared, or busy because the other reload held it.
    let prepared_on = |answer: &Value| -> Vec<String> {
        let nodes = answer["nodes"].as_array().unwrap();
        for node in nodes {
            let status = &node["prepare"]["status"];
            assert!(status == "prepared" || status == "busy", "{answer}");
        }
        nodes
            .iter()
            .filter(|n| n["prepare"]["status"] == "prepared")
            .map(|n| n["node"].to_string())
            .collect()
    };
    let (first_held, second_held) = (prepared_on(&first), prepared_on(&second));
    assert!(
        first_held.iter().all(|node| !second_held.contains(node)),
        "a node prepared both reloads at once: {first} {second}"
    );
    let refused_busy = |answer: &Value| {
        answer["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["prepare"]["status"] == "busy")
    };
    let committed: Vec<&&Value> = answers
        .iter()
        .filter(|a| a["status"] == "activated")
        .collect();
    match committed[..] {
        // The one that did not commit was refused by nodes the other held, and every node
        // serves the winner.
        [winner] => {
            let loser = answers.iter().find(|a| a["status"] != "activated").unwrap();
            assert_eq!(loser["status"], "aborted", "{loser}");
            assert!(refused_busy(loser), "{loser}");
            let version = if *winner == &first { "v2" } else { "v3" };
            assert_eq!(fleet.versions().await, [version; 3]);
        }
        // The prepares go to every node at once, so the two reloads can each win some nodes:
        // then both are refused by the nodes the other holds, both abort, and nothing changes.
        // That is the only way for both to abort here, and what is asserted.
        [] => {
            for answer in answers {
                assert_eq!(answer["status"], "aborted", "{answer}");
                assert!(refused_busy(answer), "aborted for another reason: {answer}");
            }
            assert!(
                !first_held.is_empty() && !second_held.is_empty(),
                "both aborted, but one held no node: {first} {second}"
            );
            assert_eq!(fleet.versions().await, ["v1", "v1", "v1"]);
        }
        _ => panic!("both committed: {first} {second}"),
    }
    let status = fleet.status().await;
    assert_eq!(status["agreed"], true, "{status}");
}

/// The resident memory of process `pid` now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_port_bounds_connections_until_they_prove_the_cookie() {
    use std::io::{Read, Write};
    let fleet = Fleet::start(2, &[]).await;
    let node = &fleet.nodes[0];
    let pid = node.process.child.id();
    let cluster: std::net::SocketAddr = node.cluster.parse().unwrap();
    let idle = rss_kib(pid);

    // 100 connections each announce a 16 MiB frame and send what they can of 15 MiB.
    let flood = tokio::task::spawn_blocking(move || {
        let chunk = vec![0x5a_u8; 1 << 20];
        let mut opened = 0;
        for _ in 0..100 {
            let Ok(mut stream) = std::net::TcpStream::connect(cluster) else {
                continue;
            };
            opened += 1;
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = stream.write_all(&(16u64 << 20).to_be_bytes());
            for _ in 0..15 {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
        opened
    });
    assert_eq!(flood.await.unwrap(), 100);
    let after = rss_kib(pid);
    eprintln!(
        "cluster node RSS: {} KiB idle, {} KiB after 100 connections announcing 16 MiB frames",
        idle, after
    );
    assert!(
        after < idle + 8 * 1024,
        "RSS grew from {idle} KiB to {after} KiB"
    );

    // A connection that never proves the cookie is closed at its handshake deadline.
    let mut silent = std::net::TcpStream::connect(cluster).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let opened = std::time::Instant::now();
    let closed = tokio::task::spawn_blocking(move || silent.read(&mut [0u8; 64]))
        .await
        .unwrap();
    assert!(
        matches!(closed, Ok(0) | Err(_)) && opened.elapsed() < Duration::from_secs(15),
        "still open after {:?}: {closed:?}",
        opened.elapsed()
    );
    if let Err(error) = &closed {
        assert_ne!(error.kind(), std::io::ErrorKind::WouldBlock, "not closed");
    }

    // The authenticated peer, connected before all this, is past the deadline and still in:
    // a fleet reload reaches both nodes.
    assert_eq!(
        fleet.wait_for_members(2).await["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (code, answer) = fleet.reload(&config("v2", "")).await;
    assert_eq!(
        (code, answer["status"].clone()),
        (200, json!("activated")),
        "{answer}"
    );
    assert_eq!(fleet.versions().await, vec!["v2", "v2"]);
}
