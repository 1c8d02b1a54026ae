// Longer than 450 lines on purpose: one test per clause of the reload contract; each stands alone.
//! The safe reload contract, observed from outside: real requests, bound ports and status.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use swapvisor::actors::ractor;
use swapvisor::engine::EngineSpec;
use swapvisor::{
    Config, Origin, Reload, ReloadOutcome, ReloadRequest, RunState, Runtime, Stage, SupervisorMsg,
    TryActivateResult,
};

use common::{client, controlled_registry, get, request, wait_for_status};

/// A config whose `/hello` answers `version`, whose `/slow` answers it after `delay`, with
/// extra modules and runtime settings spliced in.
fn config(version: &str, extra_modules: &str, runtime: &str) -> Config {
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
{extra_modules}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
  slow:
    trigger: {{ type: http, config: {{ server: web, path: /slow }} }}
    steps:
      - {{ name: wait, type: step.delay, config: {{ duration: 300ms }} }}
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
runtime: {{ reload: {{ {runtime} }} }}
"#
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn plain(version: &str) -> Config {
    config(version, "", "")
}

fn stop_first(version: &str, extra_modules: &str) -> Config {
    config(version, extra_modules, "mode: stop-first")
}

async fn start(config: Config) -> (Runtime, common::Controls, String) {
    let (registry, _, controls) = controlled_registry();
    let runtime = Runtime::start(config, registry)
        .await
        .expect("initial config activates");
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    (runtime, controls, format!("http://{address}"))
}

async fn version_at(base: &str) -> Value {
    let (status, body) = get(&format!("{base}/hello")).await;
    assert_eq!(status, 200, "{body}");
    body["version"].clone()
}

const FAULT_BUILD: &str = "  - { name: f, type: fault.inject, config: { failOn: build } }";
const FAULT_START: &str = "  - { name: f, type: fault.inject, config: { failOn: start } }";

#[tokio::test]
async fn a_config_that_fails_to_build_is_rejected_while_the_old_engine_serves() {
    let (runtime, _, base) = start(plain("v1")).await;
    // Keep a request in flight across the whole reload.
    let slow = tokio::spawn({
        let base = base.clone();
        async move { get(&format!("{base}/slow")).await }
    });
    let outcome = runtime
        .reload(config("v2", FAULT_BUILD, ""))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::Rejected {
            stage: Stage::Build,
            error: r#"module "f" failed to build: injected fault at build in module "f""#
                .to_owned()
        }
    );
    let invalid = runtime
        .reload(config("v2", "  - { name: x, type: no.such.type }", ""))
        .await
        .unwrap()
        .outcome;
    assert!(
        matches!(
            invalid,
            ReloadOutcome::Rejected {
                stage: Stage::Validate,
                ..
            }
        ),
        "{invalid:?}"
    );
    let unparsable = runtime
        .reload(ReloadRequest::new(EngineSpec::from("modules: [")))
        .await
        .unwrap();
    assert!(matches!(
        unparsable.outcome,
        ReloadOutcome::Rejected {
            stage: Stage::Parse,
            ..
        }
    ));

    assert_eq!(slow.await.unwrap(), (200, json!({"version": "v1"})));
    assert_eq!(version_at(&base).await, "v1");
    let status = runtime.status().await.unwrap();
    assert_eq!((status.state, status.generation), (RunState::Running, 1));
    assert_eq!(status.last_reload.unwrap().outcome.name(), "rejected");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_good_config_replaces_the_engine_on_the_same_socket() {
    let (runtime, _, base) = start(plain("v1")).await;
    assert_eq!(version_at(&base).await, "v1");
    // A request that started on v1 finishes on v1 (the old engine drains).
    let slow = tokio::spawn({
        let base = base.clone();
        async move { get(&format!("{base}/slow")).await }
    });
    wait_for_status(&runtime, "the slow request to be in flight", |s| {
        s.in_flight == 1
    })
    .await;
    assert_eq!(
        runtime.reload(plain("v2")).await.unwrap().outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(version_at(&base).await, "v2");
    assert_eq!(slow.await.unwrap(), (200, json!({"version": "v1"})));
    let status = runtime.status().await.unwrap();
    assert_eq!(status.generation, 2);
    let last = status.last_reload.unwrap();
    assert_eq!(last.generation, 2);
    assert!(
        last.timings.build.is_some()
            && last.timings.start.is_some()
            && last.timings.total.is_some()
    );
    assert_eq!(
        runtime.status().await.unwrap().listeners,
        1,
        "one socket, kept across the reload"
    );
    runtime.shutdown().await.unwrap();
}

async fn start_failure_rolls_back(mode_first: fn(&str, &str) -> Config) {
    let (runtime, _, base) = start(mode_first("v1", "")).await;

    // A module that fails to start.
    let outcome = runtime
        .reload(mode_first("v2", FAULT_START))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::RolledBack {
            error: r#"module "f" failed to start: injected fault at start in module "f""#
                .to_owned()
        }
    );
    assert_eq!(version_at(&base).await, "v1");

    // A second server on a port another socket holds.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let extra =
        format!("  - {{ name: other, type: http.server, config: {{ address: \"{taken}\" }} }}");
    let outcome = runtime
        .reload(mode_first("v3", &extra))
        .await
        .unwrap()
        .outcome;
    match &outcome {
        ReloadOutcome::RolledBack { error } => {
            assert!(
                error.starts_with(&format!(
                    "module \"other\" failed to start: cannot bind {taken}"
                )),
                "{error}"
            );
            assert!(error.contains("in use by another process"), "{error}");
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(version_at(&base).await, "v1");
    let status = runtime.status().await.unwrap();
    assert_eq!((status.state, status.generation), (RunState::Running, 1));
    runtime.shutdown().await.unwrap();
    drop(holder);
}

#[tokio::test]
async fn a_start_failure_rolls_back_in_start_first_mode() {
    start_failure_rolls_back(|v, extra| config(v, extra, "mode: start-first")).await;
}

#[tokio::test]
async fn a_start_failure_rolls_back_in_stop_first_mode() {
    start_failure_rolls_back(stop_first).await;
}

#[tokio::test]
async fn stop_first_degrades_when_the_restore_fails_then_recovers() {
    let toggle = "  - { name: t, type: test.toggle }";
    let (runtime, controls, base) = start(stop_first("v1", toggle)).await;
    assert_eq!(version_at(&base).await, "v1");

    // From now on the toggle module fails every start: the new config, and the restore of v1.
    controls.fail_starts.store(true, Ordering::SeqCst);
    let outcome = runtime
        .reload(stop_first("v2", toggle))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::Degraded {
            error: r#"module "t" failed to start: toggle is switched to fail"#.to_owned(),
            restore_error: r#"module "t" failed to start: toggle is switched to fail"#.to_owned(),
        }
    );
    let status = runtime.status().await.unwrap();
    assert_eq!((status.state, status.generation), (RunState::Degraded, 1));
    // The socket stays bound while degraded; requests are answered 503 at once, not refused.
    let (code, body) = get(&format!("{base}/hello")).await;
    assert_eq!(code, 503, "{body}");

    // The restore is retried with backoff.
    let attempts = controls.start_attempts.load(Ordering::SeqCst);
    wait_for_status(&runtime, "two failed restore attempts", |s| {
        s.restore_attempts >= 2
    })
    .await;
    assert!(controls.start_attempts.load(Ordering::SeqCst) >= attempts + 2);
    assert_eq!(runtime.status().await.unwrap().state, RunState::Degraded);

    // Once starts succeed again, a retry restores v1.
    controls.fail_starts.store(false, Ordering::SeqCst);
    let status = wait_for_status(&runtime, "the restore", |s| s.state == RunState::Running).await;
    assert_eq!(status.generation, 1);
    assert_eq!(
        status.last_reload.unwrap().outcome,
        ReloadOutcome::Restored { generation: 1 }
    );
    assert_eq!(version_at(&base).await, "v1");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_good_reload_clears_the_degraded_state() {
    let toggle = "  - { name: t, type: test.toggle }";
    let (runtime, controls, _) = start(stop_first("v1", toggle)).await;
    controls.fail_starts.store(true, Ordering::SeqCst);
    let outcome = runtime
        .reload(stop_first("v2", toggle))
        .await
        .unwrap()
        .outcome;
    assert!(
        matches!(outcome, ReloadOutcome::Degraded { .. }),
        "{outcome:?}"
    );
    // A config without the failing module activates even though the restore keeps failing.
    assert_eq!(
        runtime.reload(stop_first("v3", "")).await.unwrap().outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    let status = runtime.status().await.unwrap();
    assert_eq!(status.state, RunState::Running);
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    assert_eq!(version_at(&base).await, "v3");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn try_activate_answers_without_touching_the_live_engine() {
    let (runtime, _, base) = start(plain("v1")).await;
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let candidate =
        format!("  - {{ name: other, type: http.server, config: {{ address: \"{free}\" }} }}");
    let result = runtime
        .try_activate(config("v2", &candidate, ""))
        .await
        .unwrap();
    let answer = serde_json::to_value(&result).unwrap();
    assert_eq!(
        (answer["status"].clone(), answer["usedTypes"].clone()),
        (
            json!("build_ok"),
            json!({"moduleTypes": ["http.server"], "stepTypes": ["step.delay", "step.json_response"], "triggerTypes": ["http"]})
        )
    );
    // The top-level lists are what the candidate registers, sorted.
    let registered = answer["stepTypes"].as_array().unwrap();
    assert!(registered.contains(&json!("step.set")), "{answer}");
    assert!(
        registered.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
        "{answer}"
    );
    assert!(
        TcpListener::bind(free).is_ok(),
        "the candidate's port must not be bound"
    );

    let result = runtime
        .try_activate(config("v2", "  - { name: x, type: no.such }", ""))
        .await
        .unwrap();
    let TryActivateResult::BuildFailed { error, .. } = &result else {
        panic!("{result:?}")
    };
    assert_eq!(
        error,
        r#"modules[1] (name "x").type: unknown module type "no.such" (registered: fault.inject, http.server, http.upstream, storage.postgres, storage.sqlite, test.gated, test.record, test.toggle)"#
    );
    assert_eq!(
        serde_json::to_value(&result)
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        2
    );

    assert_eq!(version_at(&base).await, "v1");
    let status = runtime.status().await.unwrap();
    assert_eq!(
        (status.state, status.generation, status.history.len()),
        (RunState::Running, 1, 1)
    );
    wait_for_status(&runtime, "the probe candidates to exit", |s| {
        s.child_actors == 1
    })
    .await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn panics_in_build_start_and_stop_are_errors_that_name_the_unit() {
    let (runtime, _, base) = start(plain("v1")).await;
    let panicking = |stage: &str| {
        format!("  - {{ name: p, type: fault.inject, config: {{ failOn: {stage}, mode: panic }} }}")
    };

    let outcome = runtime
        .reload(config("v2", &panicking("build"), ""))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::Rejected {
            stage: Stage::Build,
            error: r#"module "p" failed to build: panicked: injected fault at build in module "p""#
                .to_owned()
        }
    );
    let outcome = runtime
        .reload(config("v2", &panicking("start"), ""))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::RolledBack {
            error: r#"module "p" failed to start: panicked: injected fault at start in module "p""#
                .to_owned()
        }
    );
    // A module that panics when stopped: the reload that replaces it still activates.
    assert_eq!(
        runtime
            .reload(config("v2", &panicking("stop"), ""))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(
        runtime.reload(plain("v3")).await.unwrap().outcome,
        ReloadOutcome::Activated { generation: 3 }
    );
    assert_eq!(version_at(&base).await, "v3");
    // Hangs are bounded by the timeouts.
    let hang = "  - { name: h, type: fault.inject, config: { failOn: start, mode: hang } }";
    let outcome = runtime
        .reload(config("v4", hang, "startTimeout: 100ms"))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::RolledBack {
            error: r#"module "h" failed to start: did not start before the start timeout"#
                .to_owned()
        }
    );
    assert_eq!(
        runtime
            .reload(config("v4", "", "buildTimeout: 100ms"))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 4 }
    );
    let hang = "  - { name: h, type: fault.inject, config: { failOn: build, mode: hang } }";
    let outcome = runtime
        .reload(config("v5", hang, ""))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::Rejected {
            stage: Stage::Build,
            error: "engine did not finish build before its deadline".to_owned()
        }
    );
    assert_eq!(version_at(&base).await, "v4");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_reloads_are_answered_one_at_a_time() {
    // Unlike every reload below, so none of them is `Unchanged`.
    let (runtime, _, base) = start(plain("initial")).await;
    let runtime = Arc::new(runtime);
    let initial = runtime.status().await.unwrap().generation;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            let next = match i % 3 {
                0 => plain(&format!("v{i}")),
                1 => config(&format!("v{i}"), FAULT_BUILD, ""),
                _ => config(&format!("v{i}"), FAULT_START, ""),
            };
            (
                i,
                runtime
                    .reload(ReloadRequest::new(EngineSpec::from(next)))
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut records = Vec::new();
    let mut by_generation = std::collections::HashMap::new();
    for task in tasks {
        let (i, record) = task.await.unwrap();
        if record.outcome.is_activated() {
            by_generation.insert(record.generation, format!("v{i}"));
        }
        records.push(record);
    }
    let activated = records.iter().filter(|r| r.outcome.is_activated()).count() as u64;
    assert_eq!(activated, 7);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome.name() == "rejected")
            .count(),
        7
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome.name() == "rolled_back")
            .count(),
        6
    );
    // One at a time: the generations handed out are exactly initial+1 ..= initial+activated.
    let mut generations: Vec<u64> = records
        .iter()
        .filter(|r| r.outcome.is_activated())
        .map(|r| r.generation)
        .collect();
    generations.sort_unstable();
    assert_eq!(
        generations,
        ((initial + 1)..=(initial + activated)).collect::<Vec<_>>()
    );
    let status =
        wait_for_status(&runtime, "every candidate to exit", |s| s.child_actors == 1).await;
    assert_eq!(status.generation, initial + activated);
    // The engine serving is the one the last activation installed.
    assert_eq!(
        version_at(&base).await,
        by_generation[&status.generation].as_str()
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn compare_and_swap_refuses_a_stale_generation() {
    let (runtime, _, base) = start(plain("v1")).await;
    assert_eq!(
        runtime
            .reload(Reload::new(plain("v2")).expecting(7))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Conflict {
            expected: 7,
            current: 1
        }
    );
    assert_eq!(version_at(&base).await, "v1");
    assert_eq!(
        runtime
            .reload(Reload::new(plain("v2")).expecting(1))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(version_at(&base).await, "v2");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn watcher_reloads_coalesce_while_api_reloads_keep_their_order() {
    let gated = "  - { name: g, type: test.gated }";
    let (runtime, controls, base) = start({
        // The first build passes the gate at once.
        config("v0", "", "")
    })
    .await;
    let runtime = Arc::new(runtime);
    let waiting = controls.build_waiting.notified();
    let first = tokio::spawn({
        let runtime = runtime.clone();
        async move {
            runtime
                .reload(config("slow", gated, ""))
                .await
                .unwrap()
                .outcome
        }
    });
    waiting.await; // the slow build is under way
    // Status is answered while the candidate builds.
    assert_eq!(runtime.status().await.unwrap().state, RunState::Reloading);

    let send = |version: &'static str, origin: Origin| {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .reload(ReloadRequest::new(EngineSpec::from(plain(version))).from(origin))
                .await
                .unwrap()
        })
    };
    let api_a = send("api-a", Origin::Api);
    wait_for_status(&runtime, "api-a queued", |s| s.queued_reloads == 1).await;
    let watch_1 = send("watch-1", Origin::Watch);
    wait_for_status(&runtime, "watch-1 queued", |s| s.queued_reloads == 2).await;
    let watch_2 = send("watch-2", Origin::Signal);
    wait_for_status(&runtime, "watch-1 superseded", |s| {
        s.history.iter().any(|r| r.outcome.name() == "superseded")
    })
    .await;
    let api_b = send("api-b", Origin::Api);
    wait_for_status(&runtime, "api-b queued", |s| s.queued_reloads == 3).await;

    controls.build_gate.add_permits(1);
    assert_eq!(
        first.await.unwrap(),
        ReloadOutcome::Activated { generation: 2 }
    );
    let api_a = api_a.await.unwrap();
    let watch_1 = watch_1.await.unwrap();
    let watch_2 = watch_2.await.unwrap();
    let api_b = api_b.await.unwrap();
    assert_eq!(watch_1.outcome, ReloadOutcome::Superseded);
    assert_eq!(api_a.outcome, ReloadOutcome::Activated { generation: 3 });
    assert_eq!(watch_2.outcome, ReloadOutcome::Activated { generation: 4 });
    assert_eq!(api_b.outcome, ReloadOutcome::Activated { generation: 5 });
    assert_eq!(version_at(&base).await, "api-b");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn embedders_can_send_reload_messages_with_call() {
    let (runtime, _, base) = start(plain("v1")).await;
    let supervisor = runtime.supervisor();
    let request = ReloadRequest::new(EngineSpec::from(plain("v2")));
    let record = ractor::call!(supervisor, SupervisorMsg::Reload, request).unwrap();
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(version_at(&base).await, "v2");
    let status = ractor::call!(supervisor, SupervisorMsg::Status).unwrap();
    assert_eq!(status.generation, 2);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn execute_runs_on_the_live_engine() {
    let (runtime, _, _) = start(plain("v1")).await;
    let output = runtime.execute("hello", json!({})).await.unwrap();
    assert_eq!(output["body"], json!({"version": "v1"}));
    runtime.reload(plain("v2")).await.unwrap();
    let output = runtime.execute("hello", json!({})).await.unwrap();
    assert_eq!(output["body"], json!({"version": "v2"}));
    runtime.shutdown().await.unwrap();
    assert!(runtime.execute("hello", json!({})).await.is_err());
}

#[tokio::test]
async fn shutdown_stops_the_engine_and_frees_the_port() {
    let (runtime, _, base) = start(plain("v1")).await;
    let address = base.trim_start_matches("http://").to_owned();
    runtime.shutdown().await.unwrap();
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "the port must be closed"
    );
    assert!(runtime.status().await.is_err(), "the supervisor has exited");
}

/// The config `reloads_under_load` cycles through: `/hello` answers `version`, `/count`
/// increments the counter plugin `hits` (whose spec starts at `start`).
fn under_load(version: &str, extra_modules: &str, mode: &str) -> Config {
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
{extra_modules}
plugins:
  - {{ name: hits, type: counter }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
  count:
    trigger: {{ type: http, config: {{ server: web, path: /count }} }}
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment }} }}
      - {{ name: r, type: step.json_response, config: {{ body: {{ count: "{{{{ bump.count }}}}" }} }} }}
runtime: {{ reload: {{ {mode} }} }}
"#
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// How many reloads `reloads_under_load` runs: 60 in the suite, `SWAPVISOR_LOAD_RELOADS` on
/// demand (docs/RELIABILITY.md records 1,000 in each mode).
fn reloads_to_run() -> usize {
    std::env::var("SWAPVISOR_LOAD_RELOADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60)
}

/// A client on one keep-alive connection that sends `path` until `stop`, and returns what
/// failed. `each` sees every 200 answer's body and may call it a failure.
fn load_client(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    served: Arc<AtomicUsize>,
    mut each: impl FnMut(&Value) -> Option<String> + Send + 'static,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let client = client();
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match request(&client, "GET", &url, "").await {
                Ok((200, body)) => {
                    served.fetch_add(1, Ordering::Relaxed);
                    failures.extend(each(&body));
                }
                Ok((status, body)) => failures.push(format!("{status} {body}")),
                Err(error) => failures.push(error),
            }
        }
        // One keep-alive connection throughout: none was closed under it.
        if client.connections() != 1 {
            failures.push(format!("{} connections opened", client.connections()));
        }
        failures
    })
}

/// Clients on keep-alive connections hammer `/hello`, and one counts through the plugin,
/// while `reloads` reloads run: in turn one that fails to build, one that fails to start, a
/// good one, and a per-plugin reload of `hits`.
async fn reloads_under_load(mode: &str, reloads: usize) {
    let (registry, _, _) = controlled_registry();
    let runtime = Runtime::start(under_load("v0", "", mode), registry)
        .await
        .expect("initial config activates");
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    let runtime = Arc::new(runtime);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let url = format!("{base}/hello");
        clients.push(load_client(url, stop.clone(), served.clone(), |_| None));
    }
    // The only client that counts: every answer is one more than the last, across engine and
    // plugin reloads (state handed over, no call lost or counted twice).
    let mut last = 0;
    clients.push(load_client(
        format!("{base}/count"),
        stop.clone(),
        served.clone(),
        move |body| {
            let count = body["count"].as_i64();
            let expected = last + 1;
            last = count.unwrap_or(last);
            (count != Some(expected)).then(|| format!("count {body} after {}", expected - 1))
        },
    ));
    let hits = runtime.plugin("hits").unwrap();
    let (mut activated, mut plugin_generation, mut serving) = (0, 1, "v0".to_owned());
    for i in 1..=reloads {
        let version = format!("v{i}");
        // Each kind of reload gets exactly its outcome, and the version served after it is
        // the new one only when it activated.
        let outcome = match i % 4 {
            0 => {
                let spec = format!("{{ name: hits, type: counter, config: {{ start: {i} }} }}");
                let spec = swapvisor::config::PluginSpec::parse(spec.as_bytes()).unwrap();
                plugin_generation += 1;
                let outcome = hits.reload(spec).await.unwrap().outcome;
                assert_eq!(
                    outcome,
                    ReloadOutcome::Activated {
                        generation: plugin_generation
                    },
                    "plugin reload {i}"
                );
                outcome
            }
            kind => {
                let extra = [FAULT_BUILD, FAULT_START, ""][kind - 1];
                let outcome = runtime.reload(under_load(&version, extra, mode)).await;
                outcome.unwrap().outcome
            }
        };
        match i % 4 {
            0 => {}
            1 => assert!(
                matches!(
                    outcome,
                    ReloadOutcome::Rejected {
                        stage: Stage::Build,
                        ..
                    }
                ),
                "{version}: {outcome:?}"
            ),
            2 => assert!(
                matches!(outcome, ReloadOutcome::RolledBack { .. }),
                "{version}: {outcome:?}"
            ),
            _ => {
                activated += 1;
                assert_eq!(
                    outcome,
                    ReloadOutcome::Activated {
                        generation: 1 + activated
                    },
                    "{version}"
                );
                serving = version.clone();
            }
        }
        assert_eq!(
            get(&format!("{base}/hello")).await.1["version"],
            serving.as_str(),
            "served after {version}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    let served = served.load(Ordering::Relaxed);
    eprintln!(
        "{mode}: {reloads} reloads, {served} requests served, {} failed (a client that opened a second connection counts as one)",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(served > reloads, "the clients must have been busy");
    assert_eq!(runtime.status().await.unwrap().generation, 1 + activated);
    assert_eq!(hits.status().generation, plugin_generation);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request_in_start_first_mode() {
    reloads_under_load("mode: start-first", reloads_to_run()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request_in_stop_first_mode() {
    reloads_under_load("mode: stop-first", reloads_to_run()).await;
}

/// The two phases of a fleet reload on one runtime: a prepared config binds nothing and serves
/// nothing until its commit; the commit activates it without building again.
#[tokio::test]
async fn a_prepared_config_binds_nothing_until_its_commit_activates_it() {
    let (runtime, _, base) = start(plain("v1")).await;
    use std::time::Duration;
    let two_phase = swapvisor::fleet::TwoPhase::new(&runtime);
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let second =
        format!("  - {{ name: other, type: http.server, config: {{ address: \"{free}\" }} }}");
    let prepared = two_phase
        .prepare(config("v2", &second, ""), Duration::from_secs(60))
        .await
        .unwrap()
        .expect("v2 builds");
    assert_eq!(
        prepared.summary.used_types.module_types,
        ["http.server".to_owned()]
    );
    assert!(
        TcpListener::bind(free).is_ok(),
        "a prepared config must not bind its port"
    );
    assert_eq!(version_at(&base).await, "v1");
    let record = two_phase
        .commit(swapvisor::CommitRequest::new(prepared.ticket))
        .await
        .unwrap();
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(
        record.fingerprint.as_deref(),
        Some(prepared.fingerprint.as_str())
    );
    assert_eq!(version_at(&base).await, "v2");
    assert!(
        TcpListener::bind(free).is_err(),
        "the committed config serves its port"
    );

    // A config that does not build is refused by the prepare; an aborted one cannot commit.
    let failure = two_phase
        .prepare(config("v3", FAULT_BUILD, ""), Duration::from_secs(60))
        .await
        .unwrap()
        .expect_err("v3 does not build");
    assert!(
        failure.message.contains("injected fault at build"),
        "{failure}"
    );
    let aborted = two_phase
        .prepare(plain("v4"), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(two_phase.abort(aborted.ticket).await.unwrap());
    let record = two_phase
        .commit(swapvisor::CommitRequest::new(aborted.ticket))
        .await
        .unwrap();
    assert_eq!(record.outcome.name(), "rejected");
    assert_eq!(version_at(&base).await, "v2");
    runtime.shutdown().await.unwrap();
}
