// Longer than 450 lines on purpose: one test per process plugin behaviour, sharing the plugin fixtures defined here.
//! Process plugins: executables that speak docs/PLUGIN_PROTOCOL.md, supervised, swapped for new
//! code with their state, and isolated from the runtime. Every test starts real processes (the
//! Rust `swapvisor-counter-plugin` and Python plugins) and checks that each one it started is
//! gone (reaped, not a zombie) before it ends.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use swapvisor::config::PluginSpec;
use swapvisor::plugin::{PluginError, PluginState, PluginStatus};
use swapvisor::{Config, Registry, ReloadOutcome, Runtime};

use common::wait_for_status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const RUST_PLUGIN: &str = env!("CARGO_BIN_EXE_swapvisor-counter-plugin");

fn python_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/counter.py")
}

fn faulty_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faulty_plugin.py")
}

/// The `{ name, type, config }` of a process plugin named `name` running `command`.
fn plugin_yaml(name: &str, command: &[&str], extra: &str) -> String {
    let command: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "name: {name}, type: process, config: {{ command: [{}], callTimeout: 2s{extra} }}, restart: {{ maxRestarts: 3, within: 10s, backoff: {{ initial: 10ms, max: 50ms }} }}",
        command.join(", ")
    )
}

/// A `plugins:` entry for a process plugin named `name` running `command`.
fn entry(name: &str, command: &[&str], extra: &str) -> String {
    format!("  - {{ {} }}", plugin_yaml(name, command, extra))
}

/// The same, as a per-plugin reload's spec.
fn plugin_spec(name: &str, command: &[&str], extra: &str) -> PluginSpec {
    let yaml = format!("{{ {} }}", plugin_yaml(name, command, extra));
    PluginSpec::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A config whose `count` pipeline increments `plugin` and answers its count.
fn config(plugins: &[String], plugin: &str, runtime: &str) -> Config {
    let yaml = format!(
        r#"
plugins:
{}
pipelines:
  count:
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: {plugin}, op: increment, args: {{ by: "{{{{ request.by }}}}" }} }} }}
runtime: {{ {runtime} }}
"#,
        plugins.join("\n")
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

async fn start(config: Config) -> Runtime {
    Runtime::start(config, Registry::with_builtins())
        .await
        .expect("the initial config activates")
}

fn status_of(status: &swapvisor::RuntimeStatus, name: &str) -> PluginStatus {
    status
        .plugins
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no plugin {name} in {status:#?}"))
}

async fn plugin_status(runtime: &Runtime, name: &str) -> PluginStatus {
    status_of(&runtime.status().await.unwrap(), name)
}

async fn call(
    runtime: &Runtime,
    plugin: &str,
    op: &str,
    args: Value,
) -> Result<Value, PluginError> {
    runtime.plugin(plugin).unwrap().call(op, args).await
}

async fn count(runtime: &Runtime, plugin: &str) -> i64 {
    call(runtime, plugin, "get", Value::Null).await.unwrap()["count"]
        .as_i64()
        .unwrap()
}

/// True while `pid` exists, zombie or not.
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (up to 10 s) until the process `pid` is gone: exited *and* reaped.
async fn assert_gone(pid: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while exists(pid) {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} is still there: {state}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Shuts the runtime down and checks that none of `pids` outlived it.
async fn shutdown(runtime: Runtime, pids: &[u32]) {
    runtime.shutdown().await.unwrap();
    for &pid in pids {
        assert_gone(pid).await;
    }
}

#[tokio::test]
async fn rust_and_python_process_plugins_serve_a_pipeline() {
    let python = python_plugin();
    let plugins = [
        entry("rusty", &[RUST_PLUGIN], ", settings: { start: 10 }"),
        entry(
            "snake",
            &[python.to_str().unwrap()],
            ", settings: { start: 100 }",
        ),
    ];
    let runtime = start(config(&plugins, "rusty", "")).await;
    assert_eq!(
        runtime.execute("count", json!({"by": 2})).await.unwrap(),
        json!({"count": 12})
    );
    assert_eq!(
        runtime.execute("count", json!({"by": 3})).await.unwrap(),
        json!({"count": 15})
    );
    // The same pipeline against the Python plugin, by a reload that keeps both instances.
    let outcome = runtime
        .reload(config(&plugins, "snake", ""))
        .await
        .unwrap()
        .outcome;
    assert_eq!(outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(
        runtime.execute("count", json!({"by": 5})).await.unwrap(),
        json!({"count": 105})
    );
    assert_eq!(
        count(&runtime, "rusty").await,
        15,
        "the Rust plugin kept its count"
    );

    let rusty = plugin_status(&runtime, "rusty").await;
    let snake = plugin_status(&runtime, "snake").await;
    assert_eq!(
        (rusty.kind.as_str(), rusty.state),
        ("process", PluginState::Running)
    );
    assert_eq!(
        rusty.version,
        env!("CARGO_PKG_VERSION"),
        "the version the handshake reported"
    );
    assert_eq!(snake.version, "1.0.0");
    assert_eq!(
        rusty.code.as_ref().map(String::len),
        Some(64),
        "a SHA-256 in hex"
    );
    let pids = [rusty.pid.unwrap(), snake.pid.unwrap()];
    assert!(pids.iter().all(|&pid| exists(pid)));
    // An unknown operation fails that call; the plugin goes on serving.
    let unknown = call(&runtime, "snake", "nope", Value::Null)
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown operation \"nope\""),
        "{unknown}"
    );
    assert_eq!(count(&runtime, "snake").await, 105);
    shutdown(runtime, &pids).await;
}

/// Callers that increment a plugin by 1 in a loop until stopped, counting what they got.
struct Load {
    stop: Arc<AtomicBool>,
    callers: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    fn start(runtime: &Runtime, plugin: &str, callers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let callers = (0..callers)
            .map(|_| {
                let (plugin, stop) = (runtime.plugin(plugin).unwrap(), stop.clone());
                tokio::spawn(async move {
                    let (mut answered, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match plugin.call("increment", json!({"by": 1})).await {
                            Ok(_) => answered += 1,
                            Err(error) => failures.push(error.to_string()),
                        }
                    }
                    (answered, failures)
                })
            })
            .collect();
        Self { stop, callers }
    }

    /// Stops the callers: how many calls were answered, and every failure.
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut answered, mut failures) = (0, Vec::new());
        for caller in self.callers {
            let (a, f) = caller.await.unwrap();
            answered += a;
            failures.extend(f);
        }
        (answered, failures)
    }
}

/// `source` with its reported version changed to `version`: a new executable.
fn with_version(source: &str, version: &str) -> String {
    let old = r#"os.environ.get("COUNTER_VERSION", "1.0.0")"#;
    assert!(source.contains(old), "the plugin's version line moved");
    source.replace(old, &format!("{version:?}"))
}

/// Writes `content` beside `path` and renames it over `path`, as deploy tools save.
fn replace_by_rename(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, content).unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn sha256(path: &Path) -> String {
    swapvisor::watch::content_hash(&std::fs::read(path).unwrap())
}

#[tokio::test]
async fn replacing_the_executable_on_disk_swaps_the_code_and_keeps_the_state() {
    let folder = tempfile::tempdir().unwrap();
    let executable = folder.path().join("counter.py");
    let source = std::fs::read_to_string(python_plugin()).unwrap();
    replace_by_rename(&executable, &source);
    let plugins = [entry(
        "hits",
        &[executable.to_str().unwrap()],
        ", watch: true",
    )];
    let runtime = start(config(&plugins, "hits", "")).await;
    let before = plugin_status(&runtime, "hits").await;
    assert_eq!(before.code.as_deref(), Some(sha256(&executable).as_str()));

    let load = Load::start(&runtime, "hits", 4);
    // Some calls before the swap.
    wait_until(|| async { count(&runtime, "hits").await >= 20 }).await;
    replace_by_rename(&executable, &with_version(&source, "2.0.0"));
    let new_code = sha256(&executable);
    let after = wait_for_status(&runtime, "the new code to serve", |status| {
        status_of(status, "hits").code.as_deref() == Some(new_code.as_str())
    })
    .await;
    let after = status_of(&after, "hits");
    // More calls after it, then stop.
    let swapped_at = count(&runtime, "hits").await;
    wait_until(|| async { count(&runtime, "hits").await >= swapped_at + 20 }).await;
    let (answered, failures) = load.finish().await;

    assert_eq!(
        failures,
        Vec::<String>::new(),
        "no call fails during a code swap"
    );
    assert_eq!(
        count(&runtime, "hits").await as u64,
        answered,
        "every call was answered exactly once, by one process or the other"
    );
    assert_eq!(after.version, "2.0.0");
    assert_eq!(after.generation, before.generation + 1);
    assert_eq!(after.state, PluginState::Running);
    assert_ne!(after.pid, before.pid);
    assert_gone(before.pid.unwrap()).await;
    shutdown(runtime, &[after.pid.unwrap()]).await;
}

/// Polls `check` (up to 10 s).
async fn wait_until<F: std::future::Future<Output = bool>>(check: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_new_executable_that_fails_to_start_handshake_or_import_is_rolled_back() {
    let faulty = faulty_plugin();
    let faulty = faulty.to_str().unwrap();
    let plugins = [entry("hits", &[faulty], "")];
    let runtime = start(config(&plugins, "hits", "")).await;
    runtime.execute("count", json!({"by": 7})).await.unwrap();
    let before = plugin_status(&runtime, "hits").await;
    let cases = [
        ("--exit-at-start", "exited"),
        ("--bad-handshake", "malformed initialize answer"),
        (
            "--wrong-protocol",
            "speaks protocol version 99; this runtime speaks version 1",
        ),
        ("--refuse-import", "this version refuses the previous state"),
    ];
    let plugin = runtime.plugin("hits").unwrap();
    for (flag, why) in cases {
        let record = plugin
            .reload(plugin_spec("hits", &[faulty, flag], ""))
            .await
            .unwrap();
        match &record.outcome {
            ReloadOutcome::RolledBack { error } => {
                assert!(error.contains(why), "{flag}: {error:?} should say {why:?}")
            }
            other => panic!("{flag}: expected RolledBack, got {other:?}"),
        }
        // The old process serves on, with its state.
        let now = plugin_status(&runtime, "hits").await;
        assert_eq!(
            (now.pid, now.generation, now.state),
            (before.pid, before.generation, PluginState::Running),
            "{flag}"
        );
        assert_eq!(count(&runtime, "hits").await, 7, "{flag}");
    }
    assert_no_zombies().await;
    shutdown(runtime, &[before.pid.unwrap()]).await;
}

#[tokio::test]
async fn a_process_that_cannot_export_its_state_keeps_serving_with_it() {
    let faulty = faulty_plugin();
    let faulty = faulty.to_str().unwrap();
    let plugins = [entry("hits", &[faulty, "--refuse-export"], "")];
    let runtime = start(config(&plugins, "hits", "")).await;
    runtime.execute("count", json!({"by": 7})).await.unwrap();
    let before = plugin_status(&runtime, "hits").await;
    let plugin = runtime.plugin("hits").unwrap();
    let record = plugin
        .reload(plugin_spec("hits", &[faulty], ""))
        .await
        .unwrap();
    match &record.outcome {
        ReloadOutcome::RolledBack { error } => assert!(
            error.contains("state/export failed: this version cannot export its state"),
            "{error}"
        ),
        other => panic!("expected RolledBack, got {other:?}"),
    }
    let now = plugin_status(&runtime, "hits").await;
    assert_eq!((now.pid, now.generation), (before.pid, before.generation));
    assert_eq!(
        count(&runtime, "hits").await,
        7,
        "the state stayed where it was"
    );
    assert_no_zombies().await;
    shutdown(runtime, &[before.pid.unwrap()]).await;
}

/// Waits (up to 10 s) until no child of this test process is a zombie.
async fn assert_no_zombies() {
    let me = std::process::id().to_string();
    let zombies = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                // pid (comm) state ppid ...: comm may hold spaces, so split after the ')'.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str())
            })
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = zombies();
        if found.is_empty() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "zombies: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_crash_looping_new_executable_on_probation_is_reverted_to_the_previous_code() {
    let folder = tempfile::tempdir().unwrap();
    let executable = folder.path().join("plugin.py");
    let source = std::fs::read_to_string(faulty_plugin()).unwrap();
    replace_by_rename(&executable, &source);
    let command = [executable.to_str().unwrap()];
    let plugins = [entry("hits", &command, "")];
    let runtime = start(config(&plugins, "hits", "reload: { probation: 60s }")).await;
    runtime.execute("count", json!({"by": 3})).await.unwrap();
    let good = plugin_status(&runtime, "hits").await;

    // A bad build lands on disk: it starts and takes the state, then crashes every time.
    let bad = source
        .replacen(
            "import json\n",
            "import json\nsys_argv_extra = ['--crash-after-start']\n",
            1,
        )
        .replacen(
            "FLAGS = set(sys.argv[1:])",
            "FLAGS = set(sys.argv[1:] + sys_argv_extra)",
            1,
        );
    assert_ne!(bad, source);
    replace_by_rename(&executable, &bad);
    let record = runtime
        .plugin("hits")
        .unwrap()
        .reload(plugin_spec("hits", &command, ""))
        .await
        .unwrap();
    assert_eq!(
        record.outcome,
        ReloadOutcome::Activated {
            generation: good.generation + 1
        }
    );

    // Its crash loop on probation puts the previous code back, though the disk holds the bad.
    let reverted = wait_for_status(&runtime, "the previous code to serve again", |status| {
        let hits = status_of(status, "hits");
        hits.code == good.code && hits.state == PluginState::Running
    })
    .await;
    let reverted = status_of(&reverted, "hits");
    assert_eq!(
        reverted.generation,
        good.generation + 2,
        "the revert is a generation of its own"
    );
    assert_ne!(
        Some(sha256(&executable)),
        good.code,
        "the disk still holds the bad code"
    );
    assert!(reverted.last_error.unwrap_or_default().contains("exited"));
    assert_eq!(
        call(&runtime, "hits", "increment", json!({"by": 1}))
            .await
            .unwrap(),
        json!({"count": 1}),
        "the crashed instance had no state to hand over; the reverted one starts afresh"
    );
    assert_no_zombies().await;
    shutdown(runtime, &[reverted.pid.unwrap()]).await;
}

#[tokio::test]
async fn a_misbehaving_process_is_restarted_and_hurts_nothing_else() {
    let faulty = faulty_plugin();
    let plugins = [
        format!(
            "  - {{ name: faulty, type: process, config: {{ command: [{:?}], callTimeout: 1s, maxLineBytes: 4096 }}, restart: {{ maxRestarts: 20, within: 60s, backoff: {{ initial: 10ms, max: 20ms }} }} }}",
            faulty.to_str().unwrap()
        ),
        entry("steady", &[RUST_PLUGIN], ""),
        "  - { name: inproc, type: counter }".to_owned(),
    ];
    let runtime = start(config(&plugins, "steady", "")).await;
    let call_timeout = Duration::from_secs(1);
    let mut pids = Vec::new();
    let faults = [
        ("spin", "within 1s"),
        ("abort", "exited"),
        ("garbage", "not a response"),
        ("endless", "longer than 4096 bytes"),
        ("close-stdout", "closed its stdout"),
    ];
    for (round, (op, why)) in faults.into_iter().enumerate() {
        let before = plugin_status(&runtime, "faulty").await;
        assert_eq!(before.state, PluginState::Running, "{op}");
        call(&runtime, "faulty", "increment", json!({"by": 2}))
            .await
            .unwrap();
        // Meanwhile the rest keeps serving.
        let steady = Load::start(&runtime, "steady", 2);
        let started = tokio::time::Instant::now();
        let error = call(&runtime, "faulty", op, Value::Null).await.unwrap_err();
        let waited = started.elapsed();
        assert!(
            error.to_string().contains(why),
            "{op}: {error} should say {why:?}"
        );
        assert!(
            waited < call_timeout + Duration::from_secs(2),
            "{op}: the caller waited {waited:?}, past callTimeout"
        );
        assert_eq!(
            call(&runtime, "inproc", "increment", Value::Null)
                .await
                .unwrap(),
            json!({"count": round + 1})
        );
        let (answered, failures) = steady.finish().await;
        assert!(failures.is_empty() && answered > 0, "{op}: {failures:?}");
        // Restarted under its policy, afresh.
        let restarted = wait_for_status(&runtime, "the faulty plugin to restart", |status| {
            let faulty = status_of(status, "faulty");
            faulty.state == PluginState::Running && faulty.restarts == before.restarts + 1
        })
        .await;
        assert_eq!(
            count(&runtime, "faulty").await,
            0,
            "{op}: a crash restart begins afresh"
        );
        assert_gone(before.pid.unwrap()).await;
        pids.push(status_of(&restarted, "faulty").pid.unwrap());
    }
    assert_eq!(
        plugin_status(&runtime, "faulty").await.generation,
        1,
        "restarts are not reloads"
    );
    pids.push(plugin_status(&runtime, "steady").await.pid.unwrap());
    assert_no_zombies().await;
    shutdown(runtime, &pids).await;
}

#[tokio::test]
async fn calls_to_a_process_are_in_flight_together() {
    let faulty = faulty_plugin();
    let plugins = [entry("slow", &[faulty.to_str().unwrap()], "")];
    let runtime = start(config(&plugins, "slow", "")).await;
    let plugin = runtime.plugin("slow").unwrap();
    let slow = tokio::spawn({
        let plugin = plugin.clone();
        async move { plugin.call("sleep", json!({"ms": 500})).await }
    });
    // While the sleep is in flight, other calls are answered.
    wait_until(|| async { plugin.call("get", Value::Null).await.is_ok() }).await;
    for by in 1..=3 {
        plugin.call("increment", json!({"by": 1})).await.unwrap();
        assert!(
            !slow.is_finished(),
            "call {by} was answered while the sleep was still running"
        );
    }
    assert_eq!(slow.await.unwrap().unwrap(), json!({"slept": 500}));
    assert_eq!(count(&runtime, "slow").await, 3);
    let pid = plugin_status(&runtime, "slow").await.pid.unwrap();
    shutdown(runtime, &[pid]).await;
}

#[tokio::test]
async fn step_types_a_process_plugin_offers_serve_pipelines_and_cannot_be_taken_away() {
    let python = python_plugin();
    let yaml = format!(
        r#"
plugins:
{}
pipelines:
  add:
    steps:
      - {{ name: add, type: counter.add, config: {{ by: "{{{{ request.by }}}}" }} }}
"#,
        entry(
            "snake",
            &[python.to_str().unwrap()],
            ", stepTypes: [counter.add]"
        )
    );
    let runtime = start(Config::parse(yaml.as_bytes()).unwrap()).await;
    assert_eq!(
        runtime.execute("add", json!({"by": 4})).await.unwrap(),
        json!({"count": 4})
    );
    // Code that does not offer `counter.add` (the Rust counter offers no step types) would
    // leave the pipeline without its step: refused, naming the user.
    let record = runtime
        .plugin("snake")
        .unwrap()
        .reload(plugin_spec("snake", &[RUST_PLUGIN], ""))
        .await
        .unwrap();
    match &record.outcome {
        ReloadOutcome::Rejected { error, .. } => assert!(
            error.contains(r#"step type "counter.add""#) && error.contains("pipelines.add"),
            "{error}"
        ),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(
        runtime.execute("add", json!({"by": 1})).await.unwrap(),
        json!({"count": 5})
    );
    let pid = plugin_status(&runtime, "snake").await.pid.unwrap();
    assert_no_zombies().await;
    shutdown(runtime, &[pid]).await;
}

#[tokio::test]
async fn the_binary_runs_a_process_plugin_reloads_it_through_the_admin_api_and_logs_its_stderr() {
    let faulty = faulty_plugin();
    let faulty = faulty.to_str().unwrap();
    let config = common::TempConfig::new(&format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
plugins:
{}
pipelines:
  count:
    trigger: {{ type: http, config: {{ server: web, path: /count }} }}
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment }} }}
      - {{ name: respond, type: step.json_response, config: {{ body: {{ count: "{{{{ bump.count }}}}" }} }} }}
  say:
    trigger: {{ type: http, config: {{ server: web, path: /say }} }}
    steps:
      - {{ name: say, type: step.plugin_call, config: {{ plugin: hits, op: stderr, args: {{ line: hello from the plugin }} }} }}
      - {{ name: respond, type: step.json_response, config: {{ body: {{ said: true }} }} }}
"#,
        entry("hits", &[faulty], "")
    ));
    let mut swapvisor =
        common::Swapvisor::start(&["run", config.as_str(), "--admin", "127.0.0.1:0"]);
    let (web, admin) = swapvisor.wait_until_up_with_admin("web");
    let count = format!("{web}/count");
    assert_eq!(common::get(&count).await, (200, json!({"count": 1})));
    assert_eq!(common::get(&count).await, (200, json!({"count": 2})));

    // What the plugin writes to stderr is logged under its name.
    assert_eq!(
        common::get(&format!("{web}/say")).await,
        (200, json!({"said": true}))
    );
    let logged = swapvisor.wait_for_line("hello from the plugin", Duration::from_secs(10));
    assert!(
        logged.contains("hits"),
        "logged under the plugin's name: {logged}"
    );

    let reload = format!("{admin}/api/v1/admin/plugins/hits/reload");
    let post = |body: String| {
        let reload = reload.clone();
        async move {
            common::request_with("POST", &reload, &[], body)
                .await
                .unwrap()
        }
    };
    let refused = format!(
        "{{ {} }}",
        plugin_yaml("hits", &[faulty, "--refuse-import"], "")
    );
    let (code, body) = post(refused).await;
    assert_eq!(
        (code, body["status"].clone()),
        (500, json!("rolled_back")),
        "{body}"
    );
    assert_eq!(common::get(&count).await, (200, json!({"count": 3})));
    let upgraded = format!(
        "{{ {} }}",
        plugin_yaml("hits", &[faulty, "--version", "2.0.0"], "")
    );
    let (code, body) = post(upgraded).await;
    assert_eq!(
        (code, body),
        (200, json!({"status": "activated", "generation": 2}))
    );
    assert_eq!(
        common::get(&count).await,
        (200, json!({"count": 4})),
        "the count moved"
    );
    let (_, status) = common::get(&format!("{admin}/api/v1/admin/engine/status")).await;
    let plugin = &status["plugins"][0];
    assert_eq!(
        (plugin["version"].clone(), plugin["kind"].clone()),
        (json!("2.0.0"), json!("process"))
    );
    let pid = plugin["pid"].as_u64().unwrap() as u32;
    assert!(exists(pid));

    // A graceful stop takes the plugin process with it.
    swapvisor.signal("TERM");
    assert_eq!(swapvisor.wait_exit(Duration::from_secs(20)), Some(0));
    assert_gone(pid).await;
}
