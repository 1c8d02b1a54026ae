// Longer than 450 lines on purpose: one test per plugin behaviour (restart, reload, probation, shutdown); each stands alone.
//! Plugins: supervised actors with OTP restarts, per-plugin reload with state, probation, and
//! an orderly shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use swapvisor::actors::ractor;
use swapvisor::config::{PluginSpec, RestartSettings};
use swapvisor::plugin::{PluginError, PluginState, PluginUnitSpec};
use swapvisor::{Config, Origin, ReloadOutcome, ReloadRequest, Runtime, Stage, SupervisorMsg};

use common::{get, plugin_registry, wait_for_status};

fn config(plugins: &str, runtime: &str) -> Config {
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
plugins:
{plugins}
pipelines:
  count:
    trigger: {{ type: http, config: {{ server: web, path: /count }} }}
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment, args: {{ by: 1 }} }} }}
      - {{ name: respond, type: step.json_response, config: {{ body: {{ count: "{{{{ bump.count }}}}" }} }} }}
runtime: {{ {runtime} }}
"#
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

const HITS: &str = "  - { name: hits, type: counter, restart: { maxRestarts: 3, within: 10s, backoff: { initial: 10ms, max: 50ms } } }";

async fn start(plugins: &str, runtime: &str) -> Runtime {
    let (registry, _, _) = plugin_registry();
    Runtime::start(config(plugins, runtime), registry)
        .await
        .expect("initial config activates")
}

async fn count(runtime: &Runtime, plugin: &str) -> i64 {
    runtime
        .plugin(plugin)
        .unwrap()
        .call("get", Value::Null)
        .await
        .unwrap()["count"]
        .as_i64()
        .unwrap()
}

async fn increment(runtime: &Runtime, plugin: &str, by: i64) -> i64 {
    let answer = runtime
        .plugin(plugin)
        .unwrap()
        .call("increment", json!({ "by": by }))
        .await
        .unwrap();
    answer["count"].as_i64().unwrap()
}

fn plugin_status(status: &swapvisor::RuntimeStatus, name: &str) -> swapvisor::plugin::PluginStatus {
    status
        .plugins
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no plugin {name}"))
}

fn counter_spec(name: &str, start: i64) -> PluginSpec {
    PluginSpec::parse(
        format!("{{ name: {name}, type: counter, config: {{ start: {start} }} }}").as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_plugin_serves_over_http_and_keeps_its_state_across_engine_reloads() {
    let runtime = start(HITS, "").await;
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    assert_eq!(
        get(&format!("{base}/count")).await,
        (200, json!({"count": 1}))
    );
    assert_eq!(
        get(&format!("{base}/count")).await,
        (200, json!({"count": 2}))
    );
    // The same plugin spec in a new config: the instance carries on.
    assert_eq!(
        runtime
            .reload(config(HITS, "reload: { drainTimeout: 1s }"))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(
        get(&format!("{base}/count")).await,
        (200, json!({"count": 3}))
    );
    // A changed plugin spec in a new config: reloaded, with the count handed over.
    let changed = "  - { name: hits, type: counter, config: { start: 100 } }";
    assert_eq!(
        runtime.reload(config(changed, "")).await.unwrap().outcome,
        ReloadOutcome::Activated { generation: 3 }
    );
    assert_eq!(
        get(&format!("{base}/count")).await,
        (200, json!({"count": 4}))
    );
    let status = runtime.status().await.unwrap();
    let hits = plugin_status(&status, "hits");
    assert_eq!(
        (hits.state, hits.generation, hits.restarts),
        (PluginState::Running, 2, 0)
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crashed_plugin_is_restarted_and_the_restart_is_counted() {
    let runtime = start(HITS, "").await;
    assert_eq!(increment(&runtime, "hits", 5).await, 5);
    let crashed = runtime
        .plugin("hits")
        .unwrap()
        .call("crash", Value::Null)
        .await
        .unwrap_err();
    assert!(
        matches!(&crashed, PluginError::Crash(reason) if reason.contains("counter crashed on request (count was 5)")),
        "{crashed}"
    );
    // The next call waits for the restart; the restarted instance begins from its start value.
    assert_eq!(increment(&runtime, "hits", 1).await, 1);
    let status = runtime.status().await.unwrap();
    let hits = plugin_status(&status, "hits");
    assert_eq!((hits.state, hits.restarts), (PluginState::Running, 1));
    assert!(
        hits.last_error
            .unwrap()
            .contains("counter crashed on request")
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crash_loop_beyond_the_intensity_marks_the_plugin_failed_and_escalates() {
    let plugins = "  - { name: hits, type: counter, restart: { maxRestarts: 2, within: 1m, backoff: { initial: 10ms, max: 10ms } } }";
    let runtime = start(plugins, "").await;
    let hits = runtime.plugin("hits").unwrap();
    for _ in 0..3 {
        // Each crash call waits for the previous restart before it is delivered.
        assert!(matches!(
            hits.call("crash", Value::Null).await,
            Err(PluginError::Crash(_))
        ));
    }
    let status = wait_for_status(&runtime, "the escalation", |s| s.escalations == 1).await;
    let failed = plugin_status(&status, "hits");
    assert_eq!((failed.state, failed.restarts), (PluginState::Failed, 2));
    assert!(
        status
            .last_escalation
            .as_deref()
            .unwrap()
            .starts_with("plugin \"hits\" exceeded its restart intensity (2 restarts within 1m)")
    );
    let refused = hits.call("get", Value::Null).await.unwrap_err();
    assert!(refused.to_string().contains("has failed"), "{refused}");
    // Outside probation nothing is reverted: the generation stays.
    assert_eq!(status.generation, 1);
    // A reload that names the plugin again starts it afresh.
    assert_eq!(
        runtime
            .reload(config(plugins, "reload: { drainTimeout: 1s }"))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(count(&runtime, "hits").await, 0);
    runtime.shutdown().await.unwrap();
}

const THREE: &str =
    "  - { name: hits, type: counter, restart: { backoff: { initial: 10ms, max: 10ms } } }
  - { name: b, type: counter, restart: { backoff: { initial: 10ms, max: 10ms } } }
  - { name: c, type: counter, restart: { backoff: { initial: 10ms, max: 10ms } } }";

async fn crash_and_collect(strategy: &str, crash: &str) -> Vec<(String, i64, u32)> {
    let runtime = start(THREE, &format!("plugins: {{ strategy: {strategy} }}")).await;
    for (i, name) in ["hits", "b", "c"].iter().enumerate() {
        increment(&runtime, name, 10 * (i as i64 + 1)).await;
    }
    assert!(matches!(
        runtime
            .plugin(crash)
            .unwrap()
            .call("crash", Value::Null)
            .await,
        Err(PluginError::Crash(_))
    ));
    // Wait until every restart this strategy triggers has happened.
    let status = wait_for_status(&runtime, "the restarts", |s| {
        s.plugins.iter().all(|p| p.state == PluginState::Running)
            && s.plugins.iter().any(|p| p.restarts > 0)
    })
    .await;
    let mut result = Vec::new();
    for plugin in &status.plugins {
        result.push((
            plugin.name.clone(),
            count(&runtime, &plugin.name).await,
            plugin.restarts,
        ));
    }
    runtime.shutdown().await.unwrap();
    result
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_instance() {
    assert_eq!(
        crash_and_collect("one_for_one", "b").await,
        vec![
            ("hits".into(), 10, 0),
            ("b".into(), 0, 1),
            ("c".into(), 30, 0)
        ]
    );
}

#[tokio::test]
async fn one_for_all_restarts_every_sibling() {
    assert_eq!(
        crash_and_collect("one_for_all", "b").await,
        vec![
            ("hits".into(), 0, 1),
            ("b".into(), 0, 1),
            ("c".into(), 0, 1)
        ]
    );
}

#[tokio::test]
async fn rest_for_one_restarts_the_instances_started_after_the_failed_one() {
    assert_eq!(
        crash_and_collect("rest_for_one", "b").await,
        vec![
            ("hits".into(), 10, 0),
            ("b".into(), 0, 1),
            ("c".into(), 0, 1)
        ]
    );
}

#[tokio::test]
async fn transient_and_temporary_restart_types() {
    let plugins = "  - { name: hits, type: counter }
  - { name: t, type: counter, restart: { policy: transient, backoff: { initial: 10ms, max: 10ms } } }
  - { name: tmp, type: counter, restart: { policy: temporary } }";
    let runtime = start(plugins, "").await;
    // transient: a normal exit is final, ...
    runtime
        .plugin("t")
        .unwrap()
        .call("exit", Value::Null)
        .await
        .unwrap();
    let status = wait_for_status(&runtime, "t stopped", |s| {
        plugin_status(s, "t").state == PluginState::Stopped
    })
    .await;
    assert_eq!(plugin_status(&status, "t").restarts, 0);
    // ... temporary: even a crash is final.
    let _ = runtime
        .plugin("tmp")
        .unwrap()
        .call("crash", Value::Null)
        .await;
    let status = wait_for_status(&runtime, "tmp failed", |s| {
        plugin_status(s, "tmp").state == PluginState::Failed
    })
    .await;
    assert_eq!(plugin_status(&status, "tmp").restarts, 0);
    assert_eq!(
        status.escalations, 0,
        "a policy that does not restart is not a crash loop"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_across_plugin_reloads_are_each_served_exactly_once() {
    let runtime = Arc::new(start(HITS, "").await);
    let mut callers = Vec::new();
    for _ in 0..4 {
        let runtime = runtime.clone();
        callers.push(tokio::spawn(async move {
            let hits = runtime.plugin("hits").unwrap();
            let mut seen = Vec::with_capacity(250);
            for _ in 0..250 {
                let answer = hits
                    .call("increment", json!({ "by": 1 }))
                    .await
                    .expect("every call is answered");
                seen.push(answer["count"].as_i64().unwrap());
            }
            seen
        }));
    }
    let mut activated = 0;
    for i in 0..20 {
        // A new config each time (the start value changes), so each reload is a real swap.
        let outcome = runtime
            .plugin("hits")
            .expect("the plugin runs")
            .reload(counter_spec("hits", 1000 + i))
            .await
            .unwrap()
            .outcome;
        assert_eq!(
            outcome,
            ReloadOutcome::Activated {
                generation: 2 + i as u64
            }
        );
        activated += 1;
    }
    let mut counts = Vec::new();
    for caller in callers {
        counts.extend(caller.await.unwrap());
    }
    counts.sort_unstable();
    // Served exactly once each: the answers are exactly 1..=1000, none lost, none repeated.
    assert_eq!(counts, (1..=1000).collect::<Vec<i64>>());
    assert_eq!(count(&runtime, "hits").await, 1000);
    assert_eq!(activated, 20);
    assert_eq!(
        plugin_status(&runtime.status().await.unwrap(), "hits").generation,
        21
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_plugin_reload_that_fails_to_start_keeps_the_old_instance_and_its_state() {
    let runtime = start(HITS, "").await;
    assert_eq!(increment(&runtime, "hits", 7).await, 7);
    let failing =
        PluginSpec::parse(b"{ name: hits, type: test.journal, config: { failStart: true } }")
            .unwrap();
    let outcome = runtime
        .plugin("hits")
        .expect("the plugin runs")
        .reload(failing)
        .await
        .unwrap()
        .outcome;
    match &outcome {
        ReloadOutcome::RolledBack { error } => {
            assert!(error.contains("hits refuses to start"), "{error}")
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(increment(&runtime, "hits", 1).await, 8);
    // An unknown plugin kind is rejected before anything is touched.
    let unknown = PluginSpec::parse(b"{ name: hits, type: nope }").unwrap();
    let outcome = runtime
        .plugin("hits")
        .expect("the plugin runs")
        .reload(unknown)
        .await
        .unwrap()
        .outcome;
    assert!(
        matches!(&outcome, ReloadOutcome::Rejected { stage: Stage::Validate, error } if error.contains("unknown plugin type \"nope\"")),
        "{outcome:?}"
    );
    assert!(matches!(
        runtime.plugin("nobody"),
        Err(swapvisor::RuntimeError::UnknownPlugin(_))
    ));
    assert_eq!(count(&runtime, "hits").await, 8);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_plugin_reload_may_not_take_away_a_type_the_config_uses() {
    let (registry, _, _) = plugin_registry();
    let yaml = r#"
plugins:
  - { name: g, type: greeter }
pipelines:
  p:
    steps:
      - { name: s, type: greet.hello }
"#;
    let runtime = Runtime::start(Config::parse(yaml.as_bytes()).unwrap(), registry)
        .await
        .unwrap();
    assert_eq!(
        runtime.execute("p", json!({})).await.unwrap(),
        json!("hello")
    );
    let lite = PluginSpec::parse(b"{ name: g, type: greeter-lite }").unwrap();
    let outcome = runtime
        .plugin("g")
        .expect("the plugin runs")
        .reload(lite)
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        ReloadOutcome::Rejected {
            stage: Stage::Validate,
            error: r#"reloading plugin "g" would remove types the running config still uses: step type "greet.hello" (used by pipelines.p.steps[0] (name "s"))"#.to_owned()
        }
    );
    assert_eq!(
        runtime.execute("p", json!({})).await.unwrap(),
        json!("hello")
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn embedders_reload_a_plugin_by_message() {
    let runtime = start(HITS, "").await;
    increment(&runtime, "hits", 3).await;
    let supervisor = runtime.plugin("hits").unwrap().supervisor().await.unwrap();
    let spec = PluginUnitSpec::new(
        counter_spec("hits", 0),
        RestartSettings {
            policy: swapvisor::config::RestartPolicy::Permanent,
            max_restarts: 3,
            within: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
        },
    );
    let record = ractor::call!(
        supervisor,
        SupervisorMsg::Reload,
        ReloadRequest::new(spec).from(Origin::Api)
    )
    .unwrap();
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(count(&runtime, "hits").await, 3);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crash_loop_during_probation_reverts_to_the_last_known_good_config() {
    let runtime = start(HITS, "reload: { probation: 30s }").await;
    let good_hash = runtime.status().await.unwrap().config_hash;
    let fragile =
        format!("{HITS}\n  - {{ name: fragile, type: counter, restart: {{ maxRestarts: 0 }} }}");
    assert_eq!(
        runtime
            .reload(config(&fragile, "reload: { probation: 30s }"))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    let _ = runtime
        .plugin("fragile")
        .unwrap()
        .call("crash", Value::Null)
        .await;
    let status = wait_for_status(&runtime, "the revert", |s| s.generation == 3).await;
    let last = status.last_reload.unwrap();
    assert_eq!(last.origin, Origin::Revert);
    assert!(
        matches!(&last.outcome, ReloadOutcome::Reverted { reason } if reason.starts_with("plugin \"fragile\" exceeded its restart intensity")),
        "{:?}",
        last.outcome
    );
    assert_eq!(status.config_hash, good_hash);
    assert!(
        status.plugins.iter().all(|p| p.name != "fragile"),
        "the reverted config has no fragile plugin"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_revert_once_the_probation_window_has_passed() {
    let runtime = start(HITS, "reload: { probation: 100ms }").await;
    let fragile =
        format!("{HITS}\n  - {{ name: fragile, type: counter, restart: {{ maxRestarts: 0 }} }}");
    assert_eq!(
        runtime
            .reload(config(&fragile, "reload: { probation: 100ms }"))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    // Let the window pass: the window itself is what is under test.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _ = runtime
        .plugin("fragile")
        .unwrap()
        .call("crash", Value::Null)
        .await;
    let status = wait_for_status(&runtime, "the escalation", |s| s.escalations == 1).await;
    assert_eq!(status.generation, 2);
    assert_eq!(
        status.last_reload.as_ref().unwrap().outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(plugin_status(&status, "fragile").state, PluginState::Failed);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_plugins_in_reverse_order_and_leaves_no_task() {
    let tasks = tokio::runtime::Handle::current().metrics();
    let before = tasks.num_alive_tasks();
    let (registry, journal, _) = plugin_registry();
    let plugins = "  - { name: hits, type: test.journal }
  - { name: b, type: test.journal }
  - { name: c, type: test.journal }";
    let runtime = Runtime::start(config(plugins, ""), registry).await.unwrap();
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    assert_eq!(
        get(&format!("{base}/count")).await,
        (200, json!({"count": null})),
        "test.journal answers without a count"
    );
    assert!(tasks.num_alive_tasks() > before);
    runtime.shutdown().await.unwrap();
    drop(runtime);
    assert_eq!(
        *journal.lock().unwrap(),
        [
            "start hits",
            "start b",
            "start c",
            "stop c",
            "stop b",
            "stop a"
        ]
        .map(|s| s.replace("stop a", "stop hits"))
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tasks.num_alive_tasks() > before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} tasks still alive after shutdown (before: {before})",
            tasks.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_plugin_hanging_in_start_rolls_the_reload_back_in_time_and_leaves_nothing() {
    let runtime = start(HITS, "").await;
    increment(&runtime, "hits", 2).await;
    let stuck =
        format!("{HITS}\n  - {{ name: stuck, type: test.journal, config: {{ hangStart: true }} }}");
    let started = std::time::Instant::now();
    let outcome = runtime
        .reload(config(
            &stuck,
            "reload: { startTimeout: 300ms, stopTimeout: 300ms }",
        ))
        .await
        .unwrap()
        .outcome;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match &outcome {
        ReloadOutcome::RolledBack { error } => assert!(
            error.starts_with("plugin \"stuck\" failed to start"),
            "{error}"
        ),
        other => panic!("expected a rollback, got {other:?}"),
    }
    // The half-started plugin is gone; the old engine and its plugin serve on.
    wait_for_status(&runtime, "the stuck plugin to be removed", |s| {
        s.plugins.iter().all(|p| p.name != "stuck")
    })
    .await;
    assert_eq!(increment(&runtime, "hits", 1).await, 3);
    // The engine still reloads (to a changed config: the same one would be `Unchanged`).
    assert_eq!(
        runtime
            .reload(config(HITS, "reload: { drainTimeout: 2s }"))
            .await
            .unwrap()
            .outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    runtime.shutdown().await.unwrap();
}

/// A failed engine start undoes each plugin change on its own: a plugin that cannot be put
/// back to its previous spec does not keep the others from being put back.
#[tokio::test]
async fn a_rolled_back_start_puts_back_every_plugin_it_can() {
    let (registry, _, controls) = plugin_registry();
    let journals = |note: u32, b_extra: &str, modules: &str| {
        let yaml = format!(
            "modules: {modules}\nplugins:\n  - {{ name: a, type: test.journal, config: {{ note: {note} }} }}\n  - {{ name: b, type: test.journal, config: {{ note: {note}{b_extra} }} }}\n"
        );
        Config::parse(yaml.as_bytes()).unwrap()
    };
    let runtime = Runtime::start(journals(1, ", failWhenSwitched: true", "[]"), registry)
        .await
        .unwrap();
    let generation = |name: &str| runtime.plugin(name).unwrap().status().generation;
    assert_eq!((generation("a"), generation("b")), (1, 1));
    // The next config changes both plugins and fails to start after they attached; while the
    // switch is on, b's previous spec cannot start again either.
    controls
        .fail_starts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let failing = journals(2, "", "[{ name: t, type: test.toggle }]");
    let outcome = runtime.reload(failing).await.unwrap().outcome;
    assert!(
        matches!(&outcome, ReloadOutcome::RolledBack { error } if error.contains("toggle is switched to fail")),
        "{outcome:?}"
    );
    // b could not be put back (it serves the failed config's spec, its reload back rolled
    // back); a, undone after it, was.
    assert_eq!((generation("a"), generation("b")), (3, 2));
    runtime.shutdown().await.unwrap();
}

/// An engine reload that arrives while a per-plugin reload hands the plugin's state over keeps
/// the plugin as it is: the instance is being replaced, not failed. (It used to count as not
/// serving, and the engine reload reloaded it again, to the config's spec, behind the
/// per-plugin reload: one generation too many, and the per-plugin reload undone.)
#[tokio::test]
async fn an_engine_reload_during_a_plugin_hand_over_keeps_the_plugin() {
    common::quiet_expected_panics();
    let plugins = "  - { name: state, type: test.stateful }";
    let runtime = Arc::new(
        start(
            &format!("{HITS}\n{plugins}"),
            "reload: { startTimeout: 1s }",
        )
        .await,
    );
    let state = runtime.plugin("state").unwrap();
    let hanging =
        PluginSpec::parse(b"{ name: state, type: test.stateful, config: { export: hang } }")
            .unwrap();
    assert_eq!(
        state.reload(hanging).await.unwrap().outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    // The next reload waits in the hand-over (the export hangs) until the start timeout.
    let handing_over = {
        let state = state.clone();
        let spec = PluginSpec::parse(b"{ name: state, type: test.stateful }").unwrap();
        tokio::spawn(async move { state.reload(spec).await.unwrap().outcome })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.status().state != PluginState::Starting {
        assert!(
            std::time::Instant::now() < deadline,
            "the hand-over never began"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A changed config (the same one would be `Unchanged`, and swap nothing).
    let engine = runtime
        .reload(config(
            &format!("{HITS}\n{plugins}"),
            "reload: { startTimeout: 1s, drainTimeout: 2s }",
        ))
        .await
        .unwrap()
        .outcome;
    assert_eq!(engine, ReloadOutcome::Activated { generation: 2 });
    assert!(
        matches!(
            handing_over.await.unwrap(),
            ReloadOutcome::RolledBack { .. }
        ),
        "the export hung"
    );
    // The old instance serves on at once: its actor gave up on the export when the swap did.
    let answered = tokio::time::timeout(Duration::from_secs(3), state.call("get", Value::Null))
        .await
        .expect("the old instance answers calls after the rollback");
    assert_eq!(answered.unwrap(), json!({ "count": 0 }));
    let status = state.status();
    assert_eq!(
        (status.state, status.generation),
        (PluginState::Running, 2),
        "the engine reload kept the instance the per-plugin reload left"
    );
    runtime.shutdown().await.unwrap();
}
