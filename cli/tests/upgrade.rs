//! Binary upgrades under load: the new process takes the listening sockets, the old one
//! drains and exits, and no client sees a failed request. Two "builds" are the same binary
//! behind two scripts that export a different `BUILD`, which the config answers with.
//!
//! The test is the subreaper of the processes it starts: each upgrade's new process outlives
//! its parent (the old one), is re-parented here, and is reaped here.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};
use serde_json::{Value, json};

use common::{Swapvisor, TempConfig, client, request};

const PLUGIN: &str = env!("CARGO_BIN_EXE_swapvisor-counter-plugin");

fn config() -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
plugins:
  - {{ name: hits, type: process, config: {{ command: [{PLUGIN:?}] }} }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, method: GET, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ build: "${{BUILD:-none}}" }} }} }}
  count:
    trigger: {{ type: http, config: {{ server: web, method: POST, path: /count }} }}
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment }} }}
      - {{ name: r, type: step.json_response, config: {{ body: {{ count: "{{{{ bump.count }}}}" }} }} }}
"#
    )
}

/// A "build": a script that sets `BUILD` and execs the binary (the pid stays the same).
fn build(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn launcher(dir: &Path, build_name: &str) -> PathBuf {
    build(
        dir,
        build_name,
        &format!(
            "export BUILD={build_name}\nexec {:?} \"$@\"",
            env!("CARGO_BIN_EXE_swapvisor")
        ),
    )
}

/// Every process an upgrade left to this test, stopped and reaped at the end (or on a panic).
#[derive(Default)]
struct Orphans(Vec<u32>);

impl Orphans {
    fn gone(pid: u32) -> bool {
        let Some(pid) = Pid::from_raw(pid as i32) else {
            return true;
        };
        // Reaped here when it is ours (re-parented to this test, its subreaper); a process
        // that is not ours (the old process reaped it) is gone when /proc no longer has it.
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(reaped) => reaped.is_some(),
            Err(_) => !Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists(),
        }
    }

    /// Waits (up to 10 s) for `pid` to exit, and reaps it.
    fn wait_gone(pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Self::gone(pid) {
            assert!(Instant::now() < deadline, "pid {pid} did not exit");
            // Polling is the only way to wait for a process with a bound.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Orphans {
    fn drop(&mut self) {
        for pid in &self.0 {
            if let Some(pid) = Pid::from_raw(*pid as i32) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
            }
        }
    }
}

/// What the clients saw: the build of each answer, each failure, and the connections opened.
type Seen = (Vec<String>, Vec<String>, usize);

/// Clients that never retry, each on its keep-alive connection, until told to stop: how many
/// answers each build gave, the errors, and the connections they opened.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.clone());
                tokio::spawn(async move {
                    let client = client();
                    let (mut builds, mut errors) = (Vec::new(), Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match request(&client, "GET", &url, "").await {
                            Ok((200, body)) => {
                                builds.push(body["build"].as_str().unwrap_or("?").to_owned())
                            }
                            Ok((status, body)) => errors.push(format!("{status} {body}")),
                            Err(error) => errors.push(error),
                        }
                    }
                    (builds, errors, client.connections())
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let (mut builds, mut errors, mut connections) = (Vec::new(), Vec::new(), 0);
        for task in self.tasks {
            let (b, e, c) = task.await.unwrap();
            builds.extend(b);
            errors.extend(e);
            connections += c;
        }
        (builds, errors, connections)
    }
}

async fn upgrade(admin: &str, binary: &Path) -> (u16, Value) {
    request(
        &client(),
        "POST",
        &format!("{admin}/api/v1/admin/upgrade"),
        &json!({ "binary": binary }).to_string(),
    )
    .await
    .unwrap()
}

async fn count(web: &str) -> i64 {
    let (status, body) = request(&client(), "POST", &format!("{web}/count"), "")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["count"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_upgrades_under_load_lose_no_request_and_no_plugin_state() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let builds = [launcher(dir.path(), "a"), launcher(dir.path(), "b")];
    let config = TempConfig::new(&config());
    // systemd's view: each new process names itself the main one once it serves.
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = Swapvisor::start_binary_with_env(
        &builds[0],
        &[
            "run",
            config.as_str(),
            "--admin",
            "127.0.0.1:0",
            "--upgrade-timeout",
            "5s",
        ],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let (web, admin) = first.wait_until_up_with_admin("web");
    let hello = format!("{web}/hello");
    assert_eq!(common::get(&hello).await.1["build"], "a");
    let mut orphans = Orphans::default();

    let load = Load::start(hello.clone(), 8);
    let mut counted = 0;
    let mut old_pid = first.child.id();
    for round in 1..=10 {
        counted = count(&web).await;
        assert_eq!(
            counted, round,
            "the plugin's count carried over every upgrade"
        );
        let to = &builds[round as usize % 2];
        let (status, report) = upgrade(&admin, to).await;
        assert_eq!(status, 200, "round {round}: {report}");
        assert_eq!(report["status"], "upgraded");
        assert_eq!(report["oldPid"], old_pid);
        let new_pid = report["newPid"].as_u64().unwrap() as u32;
        orphans.0.push(new_pid);
        let took_over = format!("MAINPID={new_pid}");
        loop {
            let mut datagram = [0u8; 4096];
            let read = notify.recv(&mut datagram).expect("MAINPID= within 10 s");
            let text = String::from_utf8_lossy(&datagram[..read]).into_owned();
            if text.lines().any(|l| l == took_over) {
                assert!(text.lines().any(|l| l == "READY=1"), "{text}");
                break;
            }
        }
        // The old process is gone, and from now on the new build answers.
        if round == 1 {
            assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(0));
        } else {
            Orphans::wait_gone(old_pid);
            orphans.0.retain(|pid| *pid != old_pid);
        }
        let expected = if round % 2 == 1 { "b" } else { "a" };
        assert_eq!(
            common::get(&hello).await.1["build"],
            expected,
            "round {round}"
        );
        let (_, process) = common::get(&format!("{admin}/api/v1/admin/process")).await;
        assert_eq!(process["pid"], new_pid);
        assert_eq!(process["upgradedFrom"], old_pid);
        old_pid = new_pid;
    }
    let (answered, errors, connections) = load.finish().await;
    assert!(
        errors.is_empty(),
        "{} failed requests: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(answered.iter().any(|b| b == "a") && answered.iter().any(|b| b == "b"));
    // Each upgrade closed each client's connection once, between two responses: the clients
    // saw a close where HTTP allows one, and opened a new connection.
    eprintln!("{} answers on {connections} connections", answered.len());
    assert!(connections >= 8 * 10, "{connections} connections");
    assert_eq!(count(&web).await, counted + 1);

    // A build that cannot start leaves the current one serving, and says so.
    let broken = build(
        dir.path(),
        "broken",
        "echo 'this build is broken' >&2\nexit 3",
    );
    let (status, report) = upgrade(&admin, &broken).await;
    assert_eq!(status, 500, "{report}");
    assert_eq!(report["status"], "failed");
    assert!(
        report["error"].as_str().unwrap().contains("exited"),
        "{report}"
    );
    assert!(Orphans::gone(report["newPid"].as_u64().unwrap() as u32));
    assert_eq!(common::get(&hello).await.1["build"], "a");
    let (_, process) = common::get(&format!("{admin}/api/v1/admin/process")).await;
    assert_eq!(
        (
            process["pid"].as_u64(),
            process["lastUpgrade"]["status"].as_str()
        ),
        (Some(old_pid as u64), Some("failed"))
    );

    // One that never reports is stopped at the deadline.
    let stuck = build(dir.path(), "stuck", "exec sleep 60");
    let (status, report) = upgrade(&admin, &stuck).await;
    assert_eq!(status, 500, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("did not connect within 5s"),
        "{report}"
    );
    Orphans::wait_gone(report["newPid"].as_u64().unwrap() as u32);
    assert_eq!(common::get(&hello).await.1["build"], "a");

    // One that others could have written is not run at all.
    std::fs::set_permissions(&builds[1], std::fs::Permissions::from_mode(0o777)).unwrap();
    let (status, report) = upgrade(&admin, &builds[1]).await;
    assert_eq!(status, 500, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("writable by its group or others"),
        "{report}"
    );
    assert!(report["newPid"].is_null());

    // The last one stops on SIGTERM like any other.
    rustix::process::kill_process(Pid::from_raw(old_pid as i32).unwrap(), Signal::TERM).unwrap();
    Orphans::wait_gone(old_pid);
    orphans.0.clear();
}
