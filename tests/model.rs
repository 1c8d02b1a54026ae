//! A model of the reload contract, checked against the real runtime on random sequences of
//! operations (proptest; failing cases shrink to a minimal sequence).
//!
//! Each case starts a runtime (start-first or stop-first) with an HTTP server and a counter
//! plugin, then applies 30-40 operations: engine reloads that are good, fail to build, fail to
//! start or panic; try-activate; per-plugin reloads, good and bad; plugin crashes; and bursts
//! of concurrent requests. A small model predicts each outcome, the generation, the version
//! that serves and the plugin's count. After every operation the test checks that exactly one
//! engine runs, status agrees with the model, real HTTP requests get the predicted version,
//! and no actor or listener is left over; after the case, that no task is.

mod common;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use swapvisor::config::PluginSpec;
use swapvisor::plugin::{PluginError, PluginState};
use swapvisor::{Config, ReloadOutcome, RunState, Runtime, Stage, TryActivateResult};

#[derive(Debug, Clone, Copy)]
enum EngineChange {
    Good,
    FailsToBuild,
    FailsToStart,
    PanicsInBuild,
    PanicsInStart,
}

#[derive(Debug, Clone, Copy)]
enum PluginChange {
    Good(i64),
    UnknownKind,
    FailsToStart,
}

#[derive(Debug, Clone)]
enum Op {
    Reload(EngineChange),
    TryActivate {
        valid: bool,
    },
    ReloadPlugin(PluginChange),
    CrashPlugin,
    /// `callers` concurrent requests, to `/hello` or (counting) through the plugin.
    Execute {
        callers: usize,
        counting: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![
            Just(EngineChange::Good),
            Just(EngineChange::FailsToBuild),
            Just(EngineChange::FailsToStart),
            Just(EngineChange::PanicsInBuild),
            Just(EngineChange::PanicsInStart),
        ].prop_map(Op::Reload),
        1 => any::<bool>().prop_map(|valid| Op::TryActivate { valid }),
        2 => prop_oneof![
            (0i64..5).prop_map(PluginChange::Good),
            Just(PluginChange::UnknownKind),
            Just(PluginChange::FailsToStart),
        ].prop_map(Op::ReloadPlugin),
        1 => Just(Op::CrashPlugin),
        3 => (1usize..5, any::<bool>()).prop_map(|(callers, counting)| Op::Execute { callers, counting }),
    ]
}

const PLUGIN: &str = "  - { name: hits, type: counter, restart: { maxRestarts: 1000, within: 1m, backoff: { initial: 1ms, max: 2ms } } }";

fn config(version: &str, fault: Option<&str>, mode: &str) -> Config {
    let fault = fault
        .map(|f| format!("  - {{ name: f, type: fault.inject, config: {f} }}\n"))
        .unwrap_or_default();
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
{fault}plugins:
{PLUGIN}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
  count:
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment }} }}
runtime: {{ reload: {{ mode: {mode}, drainTimeout: 1s, startTimeout: 2s }} }}
"#
    );
    Config::parse(yaml.as_bytes()).expect("model configs are valid")
}

/// What the runtime should look like.
#[derive(Debug)]
struct Model {
    generation: u64,
    version: String,
    next_version: u32,
    count: i64,
    plugin_generation: u64,
    /// The count a fresh instance of the running plugin spec starts from.
    plugin_start: i64,
    restarts: u32,
}

struct Harness {
    runtime: Arc<Runtime>,
    base: String,
    client: common::TestClient,
}

impl Harness {
    async fn served_version(&self) -> Result<Value, TestCaseError> {
        let (status, body) =
            common::request(&self.client, "GET", &format!("{}/hello", self.base), "")
                .await
                .map_err(|e| TestCaseError::fail(format!("GET /hello failed: {e}")))?;
        prop_assert_eq!(status, 200, "{}", body);
        Ok(body["version"].clone())
    }

    async fn apply(&self, op: &Op, model: &mut Model, mode: &str) -> Result<(), TestCaseError> {
        match op {
            Op::Reload(change) => {
                model.next_version += 1;
                let version = format!("v{}", model.next_version);
                let fault = match change {
                    EngineChange::Good => None,
                    EngineChange::FailsToBuild => Some("{ failOn: build }"),
                    EngineChange::FailsToStart => Some("{ failOn: start }"),
                    EngineChange::PanicsInBuild => Some("{ failOn: build, mode: panic }"),
                    EngineChange::PanicsInStart => Some("{ failOn: start, mode: panic }"),
                };
                let outcome = self
                    .runtime
                    .reload(config(&version, fault, mode))
                    .await
                    .expect("answers")
                    .outcome;
                match change {
                    EngineChange::Good => {
                        model.generation += 1;
                        model.version = version;
                        prop_assert_eq!(
                            outcome,
                            ReloadOutcome::Activated {
                                generation: model.generation
                            }
                        );
                    }
                    EngineChange::FailsToBuild | EngineChange::PanicsInBuild => {
                        prop_assert!(
                            matches!(
                                outcome,
                                ReloadOutcome::Rejected {
                                    stage: Stage::Build,
                                    ..
                                }
                            ),
                            "{:?}",
                            outcome
                        );
                    }
                    EngineChange::FailsToStart | EngineChange::PanicsInStart => {
                        prop_assert!(
                            matches!(outcome, ReloadOutcome::RolledBack { .. }),
                            "{:?}",
                            outcome
                        );
                    }
                }
            }
            Op::TryActivate { valid } => {
                let candidate = if *valid {
                    config("probe", None, mode)
                } else {
                    config("probe", Some("{ failOn: nope }"), mode)
                };
                let result = self.runtime.try_activate(candidate).await.expect("answers");
                prop_assert_eq!(result.is_ok(), *valid, "{:?}", result);
                if !valid {
                    prop_assert!(
                        matches!(result, TryActivateResult::BuildFailed { .. }),
                        "{:?}",
                        result
                    );
                }
            }
            Op::ReloadPlugin(change) => {
                let spec = match change {
                    PluginChange::Good(start) => format!(
                        "{{ name: hits, type: counter, config: {{ start: {start} }}, restart: {{ maxRestarts: 1000, within: 1m, backoff: {{ initial: 1ms, max: 2ms }} }} }}"
                    ),
                    PluginChange::UnknownKind => "{ name: hits, type: no-such-kind }".to_owned(),
                    PluginChange::FailsToStart => {
                        "{ name: hits, type: test.journal, config: { failStart: true } }".to_owned()
                    }
                };
                let spec = PluginSpec::parse(spec.as_bytes()).expect("valid entry");
                let outcome = self
                    .runtime
                    .plugin("hits")
                    .expect("the plugin runs")
                    .reload(spec)
                    .await
                    .expect("answers")
                    .outcome;
                match change {
                    PluginChange::Good(start) => {
                        model.plugin_generation += 1;
                        model.plugin_start = *start;
                        prop_assert_eq!(
                            outcome,
                            ReloadOutcome::Activated {
                                generation: model.plugin_generation
                            }
                        );
                    }
                    PluginChange::UnknownKind => {
                        prop_assert!(
                            matches!(
                                outcome,
                                ReloadOutcome::Rejected {
                                    stage: Stage::Validate,
                                    ..
                                }
                            ),
                            "{:?}",
                            outcome
                        );
                    }
                    PluginChange::FailsToStart => prop_assert!(
                        matches!(outcome, ReloadOutcome::RolledBack { .. }),
                        "{:?}",
                        outcome
                    ),
                }
            }
            Op::CrashPlugin => {
                let crashed = self
                    .runtime
                    .plugin("hits")
                    .expect("runs")
                    .call("crash", Value::Null)
                    .await;
                prop_assert!(
                    matches!(crashed, Err(PluginError::Crash(_))),
                    "{:?}",
                    crashed
                );
                model.restarts += 1;
                model.count = model.plugin_start;
            }
            Op::Execute { callers, counting } => {
                let calls: Vec<_> = (0..*callers)
                    .map(|_| {
                        let runtime = self.runtime.clone();
                        let pipeline = if *counting { "count" } else { "hello" };
                        tokio::spawn(async move { runtime.execute(pipeline, json!({})).await })
                    })
                    .collect();
                let mut counts = Vec::new();
                for call in calls {
                    let output = call
                        .await
                        .expect("task")
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if *counting {
                        counts.push(output["count"].as_i64().expect("a count"));
                    } else {
                        prop_assert_eq!(&output["body"]["version"], &json!(model.version));
                    }
                }
                if *counting {
                    counts.sort_unstable();
                    let expected: Vec<i64> =
                        (1..=*callers as i64).map(|i| model.count + i).collect();
                    prop_assert_eq!(counts, expected, "each call served exactly once");
                    model.count += *callers as i64;
                }
            }
        }
        Ok(())
    }

    /// Everything the model predicts, checked once the runtime has settled.
    async fn check(&self, model: &Model) -> Result<(), TestCaseError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            let status = self.runtime.status().await.expect("status");
            let plugin = &status.plugins[0];
            let settled = status.running_engines == 1
                && status.child_actors == 1
                && status.in_flight == 0
                && plugin.state == PluginState::Running;
            if settled {
                break status;
            }
            prop_assert!(
                tokio::time::Instant::now() < deadline,
                "never settled: {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        prop_assert_eq!(status.state, RunState::Running);
        prop_assert_eq!(status.generation, model.generation, "generation");
        prop_assert_eq!(status.listeners, 1, "exactly one listening socket");
        let plugin = &status.plugins[0];
        prop_assert_eq!(
            plugin.generation,
            model.plugin_generation,
            "plugin generation"
        );
        prop_assert_eq!(plugin.restarts, model.restarts, "plugin restarts");
        prop_assert_eq!(
            self.served_version().await?,
            json!(model.version),
            "served version"
        );
        let count = self
            .runtime
            .plugin("hits")
            .expect("runs")
            .call("get", Value::Null)
            .await
            .expect("answers");
        prop_assert_eq!(count["count"].as_i64(), Some(model.count), "plugin count");
        Ok(())
    }
}

async fn run_case(ops: Vec<Op>, stop_first: bool) -> Result<(), TestCaseError> {
    let mode = if stop_first {
        "stop-first"
    } else {
        "start-first"
    };
    let tasks = tokio::runtime::Handle::current().metrics();
    let before = tasks.num_alive_tasks();
    let (registry, _, _) = common::plugin_registry();
    let runtime = Arc::new(
        Runtime::start(config("v0", None, mode), registry)
            .await
            .expect("starts"),
    );
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    let harness = Harness {
        runtime: runtime.clone(),
        base,
        client: common::client(),
    };
    let mut model = Model {
        generation: 1,
        version: "v0".into(),
        next_version: 0,
        count: 0,
        plugin_generation: 1,
        plugin_start: 0,
        restarts: 0,
    };
    harness.check(&model).await?;
    for op in &ops {
        harness.apply(op, &mut model, mode).await?;
        harness.check(&model).await?;
    }
    // Its one keep-alive connection served every check: no reload closed it.
    prop_assert_eq!(harness.client.connections(), 1);
    drop(harness);
    runtime.shutdown().await.expect("stops");
    drop(runtime);
    // Nothing the runtime spawned outlives it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tasks.num_alive_tasks() > before {
        prop_assert!(
            tokio::time::Instant::now() < deadline,
            "{} tasks alive after shutdown, {before} before",
            tasks.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_runtime_behaves_like_its_model(ops in prop::collection::vec(op(), 30..40), stop_first in any::<bool>()) {
        common::quiet_expected_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
        runtime.block_on(run_case(ops, stop_first))?;
    }
}
