// Longer than 450 lines on purpose: the same fault matrix (stage × kind × swap mode), with its one runner, in one place.
//! Fault injection at every stage of a swap (build, start, stop, drain, migrate), in both swap
//! modes: an error, a panic, and a hang past the timeout. Each ends in its typed outcome, no
//! request is lost, and the process stays healthy (the next reload works).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swapvisor::actors::RetireStage;
use swapvisor::config::PluginSpec;
use swapvisor::{Config, ReloadOutcome, Runtime, Stage};

use common::{client, get, plugin_registry, request, wait_for_status};

const TIMEOUTS: &str =
    "buildTimeout: 300ms, startTimeout: 300ms, stopTimeout: 300ms, drainTimeout: 100ms";

fn config(version: &str, extra: &str, mode: &str) -> Config {
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
{extra}
plugins:
  - {{ name: state, type: test.stateful }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
  slow:
    trigger: {{ type: http, config: {{ server: web, path: /slow }} }}
    steps:
      - {{ name: wait, type: step.delay, config: {{ duration: 400ms }} }}
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
  slow-error:
    trigger: {{ type: http, config: {{ server: web, path: /slow-error }} }}
    steps:
      - {{ name: wait, type: step.delay, config: {{ duration: 400ms }} }}
      - {{ name: boom, type: step.fail, config: {{ message: "failed on purpose" }} }}
  slow-panic:
    trigger: {{ type: http, config: {{ server: web, path: /slow-panic }} }}
    steps:
      - {{ name: boom, type: test.panic, config: {{ after: 400ms }} }}
  hang:
    trigger: {{ type: http, config: {{ server: web, path: /hang }} }}
    steps:
      - {{ name: wait, type: step.delay, config: {{ duration: 1h }} }}
runtime: {{ reload: {{ mode: {mode}, {TIMEOUTS} }} }}
"#
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Clients that keep requesting `/hello` and count what does not come back 200.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    /// Starts two clients and returns once each has been served once, so that what follows
    /// happens under load (a fault that ends before a client's first request would hide
    /// exactly what this load is there to see).
    async fn start(base: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let mut first_answers = Vec::new();
        let tasks = (0..2)
            .map(|_| {
                let (stop, served, url) = (stop.clone(), served.clone(), format!("{base}/hello"));
                let (answered, first_answer) = tokio::sync::oneshot::channel::<()>();
                first_answers.push(first_answer);
                let mut answered = Some(answered);
                tokio::spawn(async move {
                    let client = client();
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match request(&client, "GET", &url, "").await {
                            Ok((200, _)) => {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.push(format!("{other:?}")),
                        }
                        if let Some(answered) = answered.take() {
                            let _ = answered.send(());
                        }
                    }
                    // One keep-alive connection throughout: none was closed under it.
                    if client.connections() != 1 {
                        failures.push(format!("{} connections opened", client.connections()));
                    }
                    failures
                })
            })
            .collect();
        for first_answer in first_answers {
            tokio::time::timeout(Duration::from_secs(10), first_answer)
                .await
                .expect("each load client gets its first answer within 10 s")
                .expect("the load client runs");
        }
        Load {
            stop,
            served,
            tasks,
        }
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.unwrap());
        }
        assert!(
            failures.is_empty(),
            "requests lost during the fault: {failures:?}"
        );
        assert!(self.served.load(Ordering::Relaxed) > 0);
    }
}

async fn version(base: &str) -> Value {
    get(&format!("{base}/hello")).await.1["version"].clone()
}

/// After a fault: the next reload works, one engine runs, no actor is left over.
async fn still_healthy(runtime: &Runtime, base: &str, mode: &str, generation: u64) {
    let outcome = runtime
        .reload(config("after", "", mode))
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::Activated {
            generation: generation + 1
        }
    );
    assert_eq!(version(base).await, "after");
    wait_for_status(runtime, "one engine and no stray actor", |s| {
        s.running_engines == 1 && s.child_actors == 1
    })
    .await;
}

async fn engine_fault(mode: &str, stage: &str, how: &str) {
    let fault = format!(
        "  - {{ name: f, type: fault.inject, config: {{ failOn: {stage}, mode: {how} }} }}"
    );
    // A stop fault sits in the config being replaced; the others in the new one.
    let (first, second) = if stage == "stop" {
        (config("v1", &fault, mode), config("v2", "", mode))
    } else {
        (config("v1", "", mode), config("v2", &fault, mode))
    };
    let (registry, _, _) = plugin_registry();
    let runtime = Runtime::start(first, registry).await.unwrap();
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    let load = Load::start(&base).await;
    let started = Instant::now();
    let outcome = runtime.reload(second).await.unwrap().outcome;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "{mode} {stage} {how}: the reload took {took:?}"
    );
    let expected_error = match (stage, how) {
        (_, "panic") => "panicked: injected fault".to_owned(),
        ("build", "hang") => "did not finish build before its deadline".to_owned(),
        ("start", "hang") => "did not start before the start timeout".to_owned(),
        (_, _) => format!("injected fault at {stage}"),
    };
    match (stage, &outcome) {
        (
            "build",
            ReloadOutcome::Rejected {
                stage: Stage::Build,
                error,
            },
        )
        | ("start", ReloadOutcome::RolledBack { error }) => {
            assert!(
                error.contains(&expected_error),
                "{mode} {stage} {how}: {error}"
            );
            assert_eq!(version(&base).await, "v1");
        }
        ("stop", ReloadOutcome::Activated { generation: 2 }) => {
            assert_eq!(version(&base).await, "v2");
            // The failed stop is counted and shown once the replaced engine has retired (in
            // start-first mode, after the reload answered), bounded by the drain and stop
            // timeouts measured from the retirement itself.
            let status =
                wait_for_status(&runtime, "the retirement", |s| s.retirements.retired == 1).await;
            let retirements = &status.retirements;
            assert_eq!(
                (retirements.stop_failures, retirements.drain_overruns),
                (1, 0),
                "{mode} {how}: {retirements:?}"
            );
            let failure = retirements.last_failure.as_ref().unwrap();
            assert_eq!((failure.generation, failure.stage), (1, RetireStage::Stop));
            let expected = match how {
                "error" => "injected fault at stop",
                "panic" => "panicked: injected fault",
                _ => "did not stop before the deadline",
            };
            assert!(
                failure.error.contains(expected),
                "{mode} {how}: {failure:?}"
            );
            // drainTimeout 100ms + stopTimeout 300ms, and a moment for the guard.
            assert!(failure.took_ms < 1_000, "{mode} {how}: {failure:?}");
            if how == "hang" {
                assert!(
                    failure.took_ms >= 300,
                    "{mode}: it ran to the stop timeout: {failure:?}"
                );
            }
        }
        _ => panic!("{mode} {stage} {how}: unexpected {outcome:?}"),
    }
    load.finish().await;
    let generation = runtime.status().await.unwrap().generation;
    still_healthy(&runtime, &base, mode, generation).await;
    runtime.shutdown().await.unwrap();
}

async fn every_engine_fault(mode: &str) {
    common::quiet_expected_panics();
    for stage in ["build", "start", "stop"] {
        for how in ["error", "panic", "hang"] {
            engine_fault(mode, stage, how).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_start_and_stop_faults_in_start_first_mode() {
    every_engine_fault("start-first").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_start_and_stop_faults_in_stop_first_mode() {
    every_engine_fault("stop-first").await;
}

/// Requests still running when the drain deadline passes: one finishes fine, one fails, one
/// panics, one hangs. The reload does not wait past the deadline, and none of the others is
/// lost: each ends as it would have without the reload.
async fn drain_faults(mode: &str) {
    common::quiet_expected_panics();
    let (registry, _, _) = plugin_registry();
    let runtime = Runtime::start(config("v1", "", mode), registry)
        .await
        .unwrap();
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    let load = Load::start(&base).await;
    let slow = |path: &'static str| {
        let url = format!("{base}{path}");
        tokio::spawn(async move { get(&url).await })
    };
    let (ok, error, panic, hang) = (
        slow("/slow"),
        slow("/slow-error"),
        slow("/slow-panic"),
        slow("/hang"),
    );
    wait_for_status(&runtime, "four requests in flight", |s| s.in_flight >= 4).await;
    let started = Instant::now();
    assert_eq!(
        runtime
            .reload(config("v2", "", mode))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the drain deadline bounds the reload"
    );
    assert_eq!(version(&base).await, "v2");
    // The drain ran out with work in flight: counted, shown, and bounded by the drain timeout
    // (100ms) measured from the retirement itself.
    let status = wait_for_status(&runtime, "the drain overrun", |s| {
        s.retirements.drain_overruns == 1
    })
    .await;
    let failure = status.retirements.last_failure.clone().unwrap();
    assert_eq!((failure.generation, failure.stage), (1, RetireStage::Drain));
    assert!(failure.error.contains("requests in flight"), "{failure:?}");
    assert!(
        (100..1_000).contains(&failure.took_ms),
        "{mode}: {failure:?}"
    );
    assert_eq!(ok.await.unwrap(), (200, json!({"version": "v1"})));
    let (code, body) = error.await.unwrap();
    assert_eq!(
        (code, body["error"].clone()),
        (500, json!("failed on purpose"))
    );
    let (code, body) = panic.await.unwrap();
    assert_eq!(code, 500);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("step panicked: the step panics on purpose"),
        "{body}"
    );
    assert!(!hang.is_finished());
    hang.abort();
    load.finish().await;
    still_healthy(&runtime, &base, mode, 2).await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_faults_in_start_first_mode() {
    drain_faults("start-first").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_faults_in_stop_first_mode() {
    drain_faults("stop-first").await;
}

/// A plugin whose old instance fails to hand its state over: an error, a panic, a hang. The
/// reload is rolled back, naming the failure, and the old instance serves on with its state;
/// calls made meanwhile are each answered once. (Before, the new instance started afresh and
/// the reload said `Activated`: the count was silently lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_faults_roll_back_and_keep_the_state() {
    common::quiet_expected_panics();
    for how in ["error", "panic", "hang"] {
        let (registry, _, _) = plugin_registry();
        let runtime = Runtime::start(config("v1", "", "start-first"), registry)
            .await
            .unwrap();
        let state = runtime.plugin("state").unwrap();
        let spec = |extra: &str| {
            PluginSpec::parse(
                format!("{{ name: state, type: test.stateful, config: {{ {extra} }} }}").as_bytes(),
            )
            .unwrap()
        };
        // An instance whose export fails, holding a count of 5.
        let outcome = state
            .reload(spec(&format!("export: {how}")))
            .await
            .unwrap()
            .outcome;
        assert_eq!(outcome, ReloadOutcome::Activated { generation: 2 }, "{how}");
        for _ in 0..5 {
            state.call("increment", Value::Null).await.unwrap();
        }
        let caller = {
            let state = state.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    state
                        .call("increment", Value::Null)
                        .await
                        .expect("every call is answered");
                }
            })
        };
        let started = Instant::now();
        let outcome = state.reload(spec("")).await.unwrap().outcome;
        assert!(started.elapsed() < Duration::from_secs(3), "{how}: bounded");
        let ReloadOutcome::RolledBack { error } = &outcome else {
            panic!("{how}: {outcome:?}")
        };
        let expected = match how {
            "error" => "could not hand over its state: this state cannot be exported",
            "panic" => "export panicked: export panics on purpose",
            // The plugin's actor and the swap both bound the export; either may say so first.
            _ => "before its deadline",
        };
        assert!(
            error.contains(expected) && error.contains("export"),
            "{how}: {error}"
        );
        caller.await.unwrap();
        assert_eq!(
            state.call("get", Value::Null).await.unwrap()["count"],
            json!(55),
            "{how}: the old instance kept its count, and no call was lost or counted twice"
        );
        assert_eq!(state.status().generation, 2, "{how}");
        runtime.shutdown().await.unwrap();
    }
}

/// A plugin whose new instance fails to take over the state: an error, a panic, a hang. The
/// old instance serves on with its state; calls made meanwhile are each answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_faults_roll_back_and_keep_the_state() {
    common::quiet_expected_panics();
    let (registry, _, _) = plugin_registry();
    let runtime = Arc::new(
        Runtime::start(config("v1", "", "start-first"), registry)
            .await
            .unwrap(),
    );
    let state = runtime.plugin("state").unwrap();
    for how in ["error", "panic", "hang"] {
        let before = state.call("get", Value::Null).await.unwrap()["count"]
            .as_i64()
            .unwrap();
        let caller = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut answered = 0i64;
                for _ in 0..50 {
                    state
                        .call("increment", Value::Null)
                        .await
                        .expect("every call is answered");
                    answered += 1;
                }
                answered
            })
        };
        let spec = PluginSpec::parse(
            format!("{{ name: state, type: test.stateful, config: {{ migrate: {how} }} }}")
                .as_bytes(),
        )
        .unwrap();
        let started = Instant::now();
        let outcome = runtime
            .plugin("state")
            .expect("the plugin runs")
            .reload(spec)
            .await
            .unwrap()
            .outcome;
        assert!(started.elapsed() < Duration::from_secs(3));
        let ReloadOutcome::RolledBack { error } = &outcome else {
            panic!("{how}: {outcome:?}")
        };
        let expected = match how {
            "error" => "refused the previous state: this state cannot be migrated",
            "panic" => "migrate panicked: migrate panics on purpose",
            _ => "did not take the previous state",
        };
        assert!(error.contains(expected), "{how}: {error}");
        let answered = caller.await.unwrap();
        let after = state.call("get", Value::Null).await.unwrap()["count"]
            .as_i64()
            .unwrap();
        assert_eq!(
            after,
            before + answered,
            "{how}: no call lost or counted twice"
        );
    }
    // Healthy: a good reload carries the count over.
    let count = state.call("get", Value::Null).await.unwrap()["count"].clone();
    let good = PluginSpec::parse(b"{ name: state, type: test.stateful }").unwrap();
    assert_eq!(
        runtime
            .plugin("state")
            .expect("the plugin runs")
            .reload(good)
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(
        state.call("get", Value::Null).await.unwrap()["count"],
        count
    );
    runtime.shutdown().await.unwrap();
}
