// Longer than 450 lines on purpose: the model, its operations, the runtime driver and the property are one argument.
//! A model of the reload contract, checked against the real runtime on random sequences of
//! operations (proptest; failing cases shrink to a minimal sequence, and are kept in
//! `cli/tests/model.regressions` so that they run first from then on).
//!
//! Each case starts a runtime (start-first or stop-first) with an HTTP server, a counter
//! plugin `hits` and, at times, a second server `web2` and a stateful plugin `vault`. It then
//! applies 30-40 operations, some of them at once:
//!
//! - engine reloads that are good, fail to build, fail to start or fail to stop (each by an
//!   error, a panic or a hang past its timeout), that add or remove `vault` and `web2`, and
//!   that switch the swap mode;
//! - compare-and-swap reloads with a current or a stale generation, and try-activate;
//! - per-plugin reloads, good and bad, of `hits`, and of `vault` whose export or import fails;
//! - plugin crashes, and bursts of concurrent requests;
//! - an engine reload, a plugin reload or crash and requests, all at once;
//! - reloads that coalesce (`superseded`), a stop-first outage that degrades and is
//!   `restored`, and a crash loop on probation that is `reverted`;
//! - and last, a shutdown: plain, during a build, or during a swap.
//!
//! A small model predicts each outcome, the generation, the version that serves, each
//! plugin's generation, restarts and count, the listeners, and how many replaced engines
//! retired and how many of their stops failed. After every operation the test checks that
//! exactly one engine runs, that status agrees with the model, that real HTTP requests get the
//! predicted version on every server, and that no actor is left over; after the case, that
//! every port is closed and no task is left.
//!
//! `PROPTEST_CASES=10000 cargo test --release --test model` runs 10,000 cases.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use swapvisor::actors::Backoff;
use swapvisor::config::PluginSpec;
use swapvisor::engine::EngineSpec;
use swapvisor::plugin::{PluginError, PluginState};
use swapvisor::{
    Config, Origin, Reload, ReloadOutcome, ReloadRequest, RunState, Runtime, Stage,
    TryActivateResult,
};
use tokio::task::JoinHandle;

/// How a fault shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Error,
    Panic,
    /// Past the stage's timeout.
    Hang,
}

impl How {
    fn name(self) -> &'static str {
        match self {
            How::Error => "error",
            How::Panic => "panic",
            How::Hang => "hang",
        }
    }
}

/// Hangs cost a timeout each, so they are drawn rarely.
fn how() -> impl Strategy<Value = How> {
    prop_oneof![4 => Just(How::Error), 4 => Just(How::Panic), 1 => Just(How::Hang)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    StartFirst,
    StopFirst,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::StartFirst => "start-first",
            Mode::StopFirst => "stop-first",
        }
    }
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::StartFirst), Just(Mode::StopFirst)]
}

#[derive(Debug, Clone, Copy)]
enum EngineChange {
    Good,
    FailsToBuild(How),
    FailsToStart(How),
    /// Activates; stopping it, when it is replaced, fails.
    FailsToStop(How),
}

fn engine_change() -> impl Strategy<Value = EngineChange> {
    prop_oneof![
        4 => Just(EngineChange::Good),
        2 => how().prop_map(EngineChange::FailsToBuild),
        2 => how().prop_map(EngineChange::FailsToStart),
        1 => how().prop_map(EngineChange::FailsToStop),
    ]
}

/// An engine reload: what its config does, in which swap mode, and whether it adds or removes
/// the `vault` plugin and the `web2` server.
#[derive(Debug, Clone, Copy)]
struct EngineReload {
    change: EngineChange,
    mode: Mode,
    flip_vault: bool,
    flip_web2: bool,
}

impl EngineReload {
    /// A good reload in `mode` that changes nothing but the version.
    fn good(mode: Mode) -> Self {
        Self {
            change: EngineChange::Good,
            mode,
            flip_vault: false,
            flip_web2: false,
        }
    }
}

fn engine_reload(flips: bool) -> impl Strategy<Value = EngineReload> {
    let flip = if flips {
        prop::bool::weighted(0.2).boxed()
    } else {
        Just(false).boxed()
    };
    (engine_change(), mode(), flip.clone(), flip).prop_map(
        |(change, mode, flip_vault, flip_web2)| EngineReload {
            change,
            mode,
            flip_vault,
            flip_web2,
        },
    )
}

#[derive(Debug, Clone, Copy)]
enum PluginChange {
    Good(i64),
    UnknownKind,
    FailsToStart,
}

fn plugin_change() -> impl Strategy<Value = PluginChange> {
    prop_oneof![
        3 => (0i64..5).prop_map(PluginChange::Good),
        1 => Just(PluginChange::UnknownKind),
        1 => Just(PluginChange::FailsToStart),
    ]
}

/// What happens to `hits` while an engine reload runs.
#[derive(Debug, Clone, Copy)]
enum PluginSide {
    Reload(PluginChange),
    Crash,
}

#[derive(Debug, Clone)]
enum Op {
    Reload(EngineReload),
    /// A good reload that expects the current generation, or a stale one.
    CompareAndSwap {
        stale: bool,
    },
    TryActivate {
        valid: bool,
    },
    ReloadPlugin(PluginChange),
    /// `calls` increments of `vault`, then a reload of it whose new instance exports with
    /// `export` and imports with `migrate` (`None`: it works).
    ReloadVault {
        calls: u8,
        export: Option<How>,
        migrate: Option<How>,
    },
    CrashPlugin,
    /// `callers` concurrent requests, to `/hello` or (counting) through the plugin.
    Execute {
        callers: usize,
        counting: bool,
    },
    /// An engine reload, something happening to `hits`, and requests, all at once.
    Concurrently {
        engine: EngineReload,
        plugin: Option<PluginSide>,
        callers: usize,
        counting: bool,
    },
    /// A reload whose build waits, then two from the file watcher: the first of those two is
    /// superseded by the second.
    Coalesce,
    /// Every start fails for a while: a reload in `Mode` rolls back (start-first) or degrades
    /// and, once starts work again, is restored (stop-first).
    Outage(Mode),
    /// A reload adds a plugin that crash-loops on probation: the runtime reverts it.
    Probation,
    /// A reload adds a plugin that crash-loops after probation: it fails for good, and stays
    /// failed until a reload removes it.
    FailPlugin,
}

fn op() -> impl Strategy<Value = Op> {
    let fault = || prop::option::weighted(0.3, how());
    prop_oneof![
        6 => engine_reload(true).prop_map(Op::Reload),
        1 => any::<bool>().prop_map(|stale| Op::CompareAndSwap { stale }),
        1 => any::<bool>().prop_map(|valid| Op::TryActivate { valid }),
        2 => plugin_change().prop_map(Op::ReloadPlugin),
        2 => (0u8..4, fault(), fault()).prop_map(|(calls, export, migrate)| Op::ReloadVault { calls, export, migrate }),
        1 => Just(Op::CrashPlugin),
        2 => (1usize..5, any::<bool>()).prop_map(|(callers, counting)| Op::Execute { callers, counting }),
        4 => (
            engine_reload(false),
            prop::option::of(prop_oneof![
                3 => plugin_change().prop_map(PluginSide::Reload),
                1 => Just(PluginSide::Crash),
            ]),
            0usize..5,
            any::<bool>(),
        ).prop_map(|(engine, plugin, callers, counting)| Op::Concurrently { engine, plugin, callers, counting }),
        1 => Just(Op::Coalesce),
        1 => mode().prop_map(Op::Outage),
        1 => Just(Op::Probation),
        1 => Just(Op::FailPlugin),
    ]
}

/// How a case ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Shutdown,
    /// While a reload's build waits, with another reload queued behind it.
    ShutdownDuringBuild,
    /// While a reload's start hangs.
    ShutdownDuringSwap,
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        2 => Just(Ending::Shutdown),
        1 => Just(Ending::ShutdownDuringBuild),
        1 => Just(Ending::ShutdownDuringSwap),
    ]
}

const HITS: &str = "  - { name: hits, type: counter, restart: { maxRestarts: 1000, within: 1m, backoff: { initial: 1ms, max: 2ms } } }";

/// What an engine config holds.
#[derive(Debug, Clone)]
struct Shape {
    version: String,
    mode: Mode,
    /// `fault.inject` settings.
    fault: Option<String>,
    vault: bool,
    web2: bool,
    /// A `test.gated` module: the build waits for a permit.
    gated: bool,
    /// A plugin that fails for good at its first crash.
    fragile: bool,
    /// A probation window long enough to revert within.
    probation: bool,
}

impl Shape {
    fn config(&self) -> Config {
        let mut modules = String::from(
            "  - { name: web, type: http.server, config: { address: \"127.0.0.1:0\" } }\n  - { name: t, type: test.toggle }\n",
        );
        if self.web2 {
            modules.push_str(
                "  - { name: web2, type: http.server, config: { address: \"127.0.0.1:0\" } }\n",
            );
        }
        if self.gated {
            modules.push_str("  - { name: g, type: test.gated }\n");
        }
        if let Some(fault) = &self.fault {
            modules.push_str(&format!(
                "  - {{ name: f, type: fault.inject, config: {fault} }}\n"
            ));
        }
        let mut plugins = format!("{HITS}\n");
        if self.vault {
            plugins.push_str("  - { name: vault, type: test.stateful }\n");
        }
        if self.fragile {
            plugins.push_str("  - { name: fragile, type: counter, restart: { maxRestarts: 0 } }\n");
        }
        let version = &self.version;
        let hello2 = if self.web2 {
            format!(
                "  hello2:\n    trigger: {{ type: http, config: {{ server: web2, path: /hello }} }}\n    steps:\n      - {{ name: r, type: step.json_response, config: {{ body: {{ version: \"{version}\" }} }} }}\n"
            )
        } else {
            String::new()
        };
        let probation = if self.probation {
            ", probation: 30s"
        } else {
            ""
        };
        let yaml = format!(
            r#"
modules:
{modules}plugins:
{plugins}pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
{hello2}  count:
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment }} }}
runtime: {{ reload: {{ mode: {mode}, buildTimeout: 200ms, startTimeout: 300ms, stopTimeout: 200ms, drainTimeout: 1s{probation} }} }}
"#,
            mode = self.mode.name(),
        );
        Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }
}

/// A counting plugin as the model sees it.
#[derive(Debug, Clone)]
struct Counter {
    count: i64,
    generation: u64,
    restarts: u32,
}

/// What the runtime should look like.
#[derive(Debug)]
struct Model {
    generation: u64,
    version: String,
    next_version: u32,
    mode: Mode,
    /// How the live engine fails to stop, if it does.
    stop_fault: Option<How>,
    hits: Counter,
    /// The count a fresh instance of the running `hits` spec starts from.
    hits_start: i64,
    vault: Option<Counter>,
    /// How the live `vault` instance fails to export its state, if it does.
    vault_export: Option<How>,
    web2: bool,
    /// The address `web2` listens on, once seen.
    web2_address: Option<String>,
    /// An address `web2` gave up, which must refuse connections.
    web2_closed: Option<String>,
    /// Replaced engines whose retirement finished, and how many of their stops failed.
    retired: u64,
    stop_failures: u64,
    /// Crash loops escalated past a plugin's restart intensity.
    escalations: u32,
}

impl Model {
    fn next_version(&mut self) -> String {
        self.next_version += 1;
        format!("v{}", self.next_version)
    }

    /// The live config, changed as `reload` says, under `version`.
    fn shape(&self, reload: &EngineReload, version: &str) -> Shape {
        let fault = match reload.change {
            EngineChange::Good => None,
            EngineChange::FailsToBuild(how) => Some(("build", how)),
            EngineChange::FailsToStart(how) => Some(("start", how)),
            EngineChange::FailsToStop(how) => Some(("stop", how)),
        };
        Shape {
            version: version.to_owned(),
            mode: reload.mode,
            fault: fault.map(|(stage, how)| format!("{{ failOn: {stage}, mode: {} }}", how.name())),
            vault: self.vault.is_some() != reload.flip_vault,
            web2: self.web2 != reload.flip_web2,
            gated: false,
            fragile: false,
            probation: false,
        }
    }

    /// The live config under a new version, unchanged otherwise.
    fn same(&self, version: &str) -> Shape {
        self.shape(&EngineReload::good(self.mode), version)
    }

    /// The live engine is stopped: counted as retired, and as a stop failure if it fails to.
    fn stop_live(&mut self) {
        self.retired += 1;
        self.stop_failures += u64::from(self.stop_fault.is_some());
    }

    /// Checks the outcome of an engine reload to `reload` under `version`, and moves the
    /// model along.
    fn engine_reloaded(
        &mut self,
        reload: &EngineReload,
        version: String,
        outcome: &ReloadOutcome,
    ) -> Result<(), TestCaseError> {
        match reload.change {
            EngineChange::Good | EngineChange::FailsToStop(_) => {
                prop_assert_eq!(
                    outcome,
                    &ReloadOutcome::Activated {
                        generation: self.generation + 1
                    }
                );
                self.stop_live();
                self.generation += 1;
                self.version = version;
                self.mode = reload.mode;
                self.stop_fault = match reload.change {
                    EngineChange::FailsToStop(how) => Some(how),
                    _ => None,
                };
                if reload.flip_vault {
                    self.vault = match self.vault {
                        Some(_) => None,
                        None => Some(Counter {
                            count: 0,
                            generation: 1,
                            restarts: 0,
                        }),
                    };
                    self.vault_export = None;
                }
                if reload.flip_web2 {
                    self.web2 = !self.web2;
                    self.web2_closed = self.web2_address.take();
                }
            }
            EngineChange::FailsToBuild(how) => {
                let ReloadOutcome::Rejected {
                    stage: Stage::Build,
                    error,
                } = outcome
                else {
                    return Err(TestCaseError::fail(format!(
                        "{reload:?}: expected rejected at build, got {outcome:?}"
                    )));
                };
                prop_assert!(fault_named(error, how), "{:?}: {}", reload, error);
            }
            EngineChange::FailsToStart(how) => {
                let ReloadOutcome::RolledBack { error } = outcome else {
                    return Err(TestCaseError::fail(format!(
                        "{reload:?}: expected rolled back, got {outcome:?}"
                    )));
                };
                prop_assert!(fault_named(error, how), "{:?}: {}", reload, error);
                // Stop-first stopped the live engine before it tried, then started it again.
                if reload.mode == Mode::StopFirst {
                    self.stop_live();
                }
            }
        }
        Ok(())
    }

    /// Checks the outcome of a per-plugin reload of `hits`, and moves the model along.
    fn plugin_reloaded(
        &mut self,
        change: PluginChange,
        outcome: &ReloadOutcome,
    ) -> Result<(), TestCaseError> {
        match change {
            PluginChange::Good(start) => {
                self.hits.generation += 1;
                self.hits_start = start;
                prop_assert_eq!(
                    outcome,
                    &ReloadOutcome::Activated {
                        generation: self.hits.generation
                    }
                );
            }
            PluginChange::UnknownKind => prop_assert!(
                matches!(
                    outcome,
                    ReloadOutcome::Rejected {
                        stage: Stage::Validate,
                        ..
                    }
                ),
                "{:?}",
                outcome
            ),
            PluginChange::FailsToStart => prop_assert!(
                matches!(outcome, ReloadOutcome::RolledBack { .. }),
                "{:?}",
                outcome
            ),
        }
        Ok(())
    }

    /// `hits` crashed: it restarts from its spec's start value.
    fn crashed(&mut self) {
        self.hits.restarts += 1;
        self.hits.count = self.hits_start;
    }
}

/// Whether an error names the injected fault.
fn fault_named(error: &str, how: How) -> bool {
    match how {
        How::Error | How::Panic => error.contains("injected fault"),
        How::Hang => error.contains("timeout") || error.contains("deadline"),
    }
}

fn plugin_spec(change: PluginChange) -> PluginSpec {
    let spec = match change {
        PluginChange::Good(start) => format!(
            "{{ name: hits, type: counter, config: {{ start: {start} }}, restart: {{ maxRestarts: 1000, within: 1m, backoff: {{ initial: 1ms, max: 2ms }} }} }}"
        ),
        PluginChange::UnknownKind => "{ name: hits, type: no-such-kind }".to_owned(),
        PluginChange::FailsToStart => {
            "{ name: hits, type: test.journal, config: { failStart: true } }".to_owned()
        }
    };
    PluginSpec::parse(spec.as_bytes()).expect("valid entry")
}

struct Harness {
    runtime: Arc<Runtime>,
    controls: common::Controls,
    base: String,
    client: common::TestClient,
}

/// Waits for `task` (an operation the harness spawned), which must end within 10 s.
async fn joined<T>(task: JoinHandle<T>, what: &str) -> Result<T, TestCaseError> {
    match tokio::time::timeout(Duration::from_secs(10), task).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(TestCaseError::fail(format!("{what}: {error}"))),
        Err(_) => Err(TestCaseError::fail(format!("{what}: no answer in 10 s"))),
    }
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

    fn reload(&self, request: impl Into<Reload> + Send + 'static) -> JoinHandle<ReloadOutcome> {
        let runtime = self.runtime.clone();
        tokio::spawn(async move { runtime.reload(request).await.expect("answers").outcome })
    }

    /// Sends a reload of `shape` with a build that waits for a permit, once the build waits.
    async fn reload_waiting_in_build(
        &self,
        mut shape: Shape,
    ) -> Result<JoinHandle<ReloadOutcome>, TestCaseError> {
        shape.gated = true;
        let waiting = self.controls.build_waiting.notified();
        let building = self.reload(shape.config());
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .map_err(|_| TestCaseError::fail("the gated build never began"))?;
        Ok(building)
    }

    /// Crashes the plugin `name` with a call that makes it panic.
    async fn crash(&self, name: &str) -> Result<(), TestCaseError> {
        let plugin = self.runtime.plugin(name).expect("runs");
        let crashed = plugin.call("crash", Value::Null).await;
        prop_assert!(
            matches!(crashed, Err(PluginError::Crash(_))),
            "{:?}",
            crashed
        );
        Ok(())
    }

    /// Waits until the runtime's status satisfies `check`.
    async fn until(
        &self,
        what: &str,
        check: impl Fn(&swapvisor::RuntimeStatus) -> bool,
    ) -> Result<swapvisor::RuntimeStatus, TestCaseError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.runtime.status().await.expect("status");
            if check(&status) {
                return Ok(status);
            }
            prop_assert!(
                tokio::time::Instant::now() < deadline,
                "never saw {what}: {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// `callers` concurrent executions of `/hello` or (counting) of the plugin pipeline.
    fn requests(&self, callers: usize, counting: bool) -> Vec<JoinHandle<Result<Value, String>>> {
        (0..callers)
            .map(|_| {
                let runtime = self.runtime.clone();
                let pipeline = if counting { "count" } else { "hello" };
                tokio::spawn(async move {
                    runtime
                        .execute(pipeline, json!({}))
                        .await
                        .map_err(|e| e.to_string())
                })
            })
            .collect()
    }

    async fn apply(&self, op: &Op, model: &mut Model) -> Result<(), TestCaseError> {
        match op {
            Op::Reload(reload) => {
                let version = model.next_version();
                let config = model.shape(reload, &version).config();
                let outcome = joined(self.reload(config), "reload").await?;
                model.engine_reloaded(reload, version, &outcome)?;
            }
            Op::CompareAndSwap { stale } => {
                let version = model.next_version();
                let expected = model.generation + if *stale { 3 } else { 0 };
                let request = Reload::new(model.same(&version).config()).expecting(expected);
                let outcome = joined(self.reload(request), "compare-and-swap").await?;
                if *stale {
                    prop_assert_eq!(
                        outcome,
                        ReloadOutcome::Conflict {
                            expected,
                            current: model.generation
                        }
                    );
                } else {
                    let reload = EngineReload::good(model.mode);
                    model.engine_reloaded(&reload, version, &outcome)?;
                }
            }
            Op::TryActivate { valid } => {
                let mut candidate = model.same("probe");
                if !valid {
                    candidate.fault = Some("{ failOn: nope }".to_owned());
                }
                let result = self
                    .runtime
                    .try_activate(candidate.config())
                    .await
                    .expect("answers");
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
                let outcome = self
                    .runtime
                    .plugin("hits")
                    .expect("the plugin runs")
                    .reload(plugin_spec(*change))
                    .await
                    .expect("answers")
                    .outcome;
                model.plugin_reloaded(*change, &outcome)?;
            }
            Op::ReloadVault {
                calls,
                export,
                migrate,
            } => {
                let Some(vault) = model.vault.as_mut() else {
                    prop_assert!(self.runtime.plugin("vault").is_err(), "no vault runs");
                    return Ok(());
                };
                let plugin = self.runtime.plugin("vault").expect("the vault runs");
                for _ in 0..*calls {
                    let answer = plugin.call("increment", Value::Null).await;
                    vault.count += 1;
                    prop_assert_eq!(answer.ok(), Some(json!({ "count": vault.count })));
                }
                let settings = |how: Option<How>| how.map_or("ok", How::name);
                let spec = format!(
                    "{{ name: vault, type: test.stateful, config: {{ export: {}, migrate: {} }} }}",
                    settings(*export),
                    settings(*migrate)
                );
                let spec = PluginSpec::parse(spec.as_bytes()).expect("valid entry");
                let outcome = plugin.reload(spec).await.expect("answers").outcome;
                match (model.vault_export, migrate) {
                    (None, None) => {
                        vault.generation += 1;
                        prop_assert_eq!(
                            outcome,
                            ReloadOutcome::Activated {
                                generation: vault.generation
                            }
                        );
                        model.vault_export = *export;
                    }
                    // The live instance cannot hand its state over, or the new one cannot take
                    // it: rolled back, naming which, and the state stays where it was.
                    (failing_export, _) => {
                        let ReloadOutcome::RolledBack { error } = &outcome else {
                            return Err(TestCaseError::fail(format!("{op:?}: {outcome:?}")));
                        };
                        let named = if failing_export.is_some() {
                            error.contains("export")
                        } else {
                            error.contains("previous state") || error.contains("migrate")
                        };
                        prop_assert!(named, "{:?}: {}", op, error);
                    }
                }
            }
            Op::CrashPlugin => {
                self.crash("hits").await?;
                model.crashed();
            }
            Op::Execute { callers, counting } => {
                let calls = self.requests(*callers, *counting);
                let mut counts = Vec::new();
                for call in calls {
                    let output = joined(call, "request")
                        .await?
                        .map_err(TestCaseError::fail)?;
                    if *counting {
                        counts.push(output["count"].as_i64().expect("a count"));
                    } else {
                        prop_assert_eq!(&output["body"]["version"], &json!(model.version));
                    }
                }
                if *counting {
                    counts.sort_unstable();
                    let expected: Vec<i64> = (1..=*callers as i64)
                        .map(|i| model.hits.count + i)
                        .collect();
                    prop_assert_eq!(counts, expected, "each call served exactly once");
                    model.hits.count += *callers as i64;
                }
            }
            Op::Concurrently {
                engine,
                plugin,
                callers,
                counting,
            } => {
                self.concurrently(model, engine, *plugin, *callers, *counting)
                    .await?
            }
            Op::Coalesce => self.coalesce(model).await?,
            Op::Outage(mode) => self.outage(model, *mode).await?,
            Op::Probation => self.probation(model).await?,
            Op::FailPlugin => self.fail_plugin(model).await?,
        }
        Ok(())
    }

    async fn concurrently(
        &self,
        model: &mut Model,
        engine: &EngineReload,
        plugin: Option<PluginSide>,
        callers: usize,
        counting: bool,
    ) -> Result<(), TestCaseError> {
        let version = model.next_version();
        let old_version = model.version.clone();
        let reload = self.reload(model.shape(engine, &version).config());
        let hits = self.runtime.plugin("hits").expect("runs");
        let plugin_task = plugin.map(|side| {
            let hits = hits.clone();
            tokio::spawn(async move {
                match side {
                    PluginSide::Reload(change) => {
                        Ok(hits.reload(plugin_spec(change)).await.expect("answers"))
                    }
                    PluginSide::Crash => Err(hits.call("crash", Value::Null).await),
                }
            })
        });
        let calls = self.requests(callers, counting);

        let outcome = joined(reload, "the engine reload").await?;
        model.engine_reloaded(engine, version.clone(), &outcome)?;
        let crashed = match (plugin, plugin_task) {
            (Some(PluginSide::Reload(change)), Some(task)) => {
                let Ok(record) = joined(task, "the plugin reload").await? else {
                    unreachable!("a reload answers a record")
                };
                model.plugin_reloaded(change, &record.outcome)?;
                false
            }
            (Some(PluginSide::Crash), Some(task)) => {
                let Err(crashed) = joined(task, "the crash").await? else {
                    unreachable!("a crash answers an error")
                };
                prop_assert!(
                    matches!(crashed, Err(PluginError::Crash(_))),
                    "{:?}",
                    crashed
                );
                true
            }
            _ => false,
        };
        let mut counts = Vec::new();
        for call in calls {
            match joined(call, "request").await? {
                Ok(output) if counting => counts.push(output["count"].as_i64().expect("a count")),
                Ok(output) => {
                    // Served by the old engine or, once it activated, the new one.
                    let served = output["body"]["version"].as_str().unwrap_or_default();
                    prop_assert!(
                        served == old_version || (served == version && outcome.is_activated()),
                        "served {} during {:?} from {}",
                        served,
                        outcome,
                        old_version
                    );
                }
                // A call that met the crash fails, and was not counted.
                Err(_) if counting && crashed => {}
                Err(error) => {
                    return Err(TestCaseError::fail(format!("a request failed: {error}")));
                }
            }
        }
        counts.sort_unstable();
        let before = model.hits.count;
        if crashed {
            model.crashed();
            // The calls before the crash counted on from the old count; those after it, from
            // the start value. Read where it ended, and check that the two runs account for
            // every successful call, each once.
            let now = hits.call("get", Value::Null).await.expect("answers")["count"]
                .as_i64()
                .expect("a count");
            let after = now - model.hits_start;
            let before_crash = counts.len() as i64 - after;
            prop_assert!(
                (0..=counts.len() as i64).contains(&after),
                "{} calls counted, the count went {} → crash → {} from {}",
                counts.len(),
                before,
                now,
                model.hits_start
            );
            let mut expected: Vec<i64> = (1..=before_crash)
                .map(|i| before + i)
                .chain((1..=after).map(|i| model.hits_start + i))
                .collect();
            expected.sort_unstable();
            prop_assert_eq!(&counts, &expected, "each call counted exactly once");
            model.hits.count = now;
        } else if counting {
            let expected: Vec<i64> = (1..=callers as i64).map(|i| before + i).collect();
            prop_assert_eq!(counts, expected, "each call served exactly once");
            model.hits.count += callers as i64;
        }
        Ok(())
    }

    async fn coalesce(&self, model: &mut Model) -> Result<(), TestCaseError> {
        let (first, watched, newest) = (
            model.next_version(),
            model.next_version(),
            model.next_version(),
        );
        let building = self.reload_waiting_in_build(model.same(&first)).await?;
        let watch = |version: &str, origin: Origin| {
            ReloadRequest::new(EngineSpec::from(model.same(version).config())).from(origin)
        };
        let superseded = self.reload(watch(&watched, Origin::Watch));
        self.until("the first watch reload queued", |s| s.queued_reloads == 1)
            .await?;
        let latest = self.reload(watch(&newest, Origin::Signal));
        prop_assert_eq!(
            joined(superseded, "the superseded reload").await?,
            ReloadOutcome::Superseded
        );
        self.controls.build_gate.add_permits(1);
        let good = EngineReload::good(model.mode);
        let outcome = joined(building, "the gated reload").await?;
        model.engine_reloaded(&good, first, &outcome)?;
        let outcome = joined(latest, "the latest watch reload").await?;
        model.engine_reloaded(&good, newest, &outcome)?;
        Ok(())
    }

    async fn outage(&self, model: &mut Model, mode: Mode) -> Result<(), TestCaseError> {
        let version = model.next_version();
        let mut shape = model.same(&version);
        shape.mode = mode;
        self.controls.fail_starts.store(true, Ordering::SeqCst);
        let outcome = joined(self.reload(shape.config()), "the reload").await;
        let result = async {
            let outcome = outcome?;
            match mode {
                Mode::StartFirst => {
                    prop_assert!(
                        matches!(outcome, ReloadOutcome::RolledBack { .. }),
                        "{:?}",
                        outcome
                    );
                    Ok(())
                }
                Mode::StopFirst => {
                    prop_assert!(
                        matches!(outcome, ReloadOutcome::Degraded { .. }),
                        "{:?}",
                        outcome
                    );
                    model.stop_live();
                    let status = self.runtime.status().await.expect("status");
                    prop_assert_eq!(status.state, RunState::Degraded);
                    prop_assert_eq!(status.generation, model.generation);
                    // Nothing serves, and the socket says so at once.
                    let (code, _) =
                        common::request(&self.client, "GET", &format!("{}/hello", self.base), "")
                            .await
                            .map_err(TestCaseError::fail)?;
                    prop_assert_eq!(code, 503);
                    self.until("a failed restore attempt", |s| s.restore_attempts >= 1)
                        .await?;
                    Ok(())
                }
            }
        }
        .await;
        self.controls.fail_starts.store(false, Ordering::SeqCst);
        result?;
        if mode == Mode::StopFirst {
            let status = self
                .until("the restore", |s| s.state == RunState::Running)
                .await?;
            prop_assert_eq!(
                status.last_reload.map(|r| r.outcome),
                Some(ReloadOutcome::Restored {
                    generation: model.generation
                })
            );
        }
        Ok(())
    }

    async fn probation(&self, model: &mut Model) -> Result<(), TestCaseError> {
        let version = model.next_version();
        let mut fragile = model.same(&version);
        fragile.fragile = true;
        fragile.probation = true;
        let outcome = joined(self.reload(fragile.config()), "the reload").await?;
        prop_assert_eq!(
            outcome,
            ReloadOutcome::Activated {
                generation: model.generation + 1
            }
        );
        model.stop_live();
        self.crash("fragile").await?;
        let reverted_to = model.generation + 2;
        let status = self
            .until("the revert", |s| s.generation == reverted_to)
            .await?;
        let outcome = status.last_reload.map(|r| r.outcome);
        prop_assert!(
            matches!(&outcome, Some(ReloadOutcome::Reverted { reason }) if reason.starts_with("plugin \"fragile\" exceeded its restart intensity")),
            "{:?}",
            outcome
        );
        // The fragile engine retired (it stops cleanly); the previous config serves again,
        // as a new generation, with its stop fault if it had one.
        model.retired += 1;
        model.generation = reverted_to;
        model.escalations += 1;
        Ok(())
    }

    async fn fail_plugin(&self, model: &mut Model) -> Result<(), TestCaseError> {
        let (with, without) = (model.next_version(), model.next_version());
        let mut fragile = model.same(&with);
        fragile.fragile = true;
        let outcome = joined(self.reload(fragile.config()), "the reload").await?;
        let good = EngineReload::good(model.mode);
        model.engine_reloaded(&good, with, &outcome)?;
        let plugin = self.runtime.plugin("fragile").expect("runs");
        self.crash("fragile").await?;
        model.escalations += 1;
        let escalations = model.escalations;
        let status = self
            .until("the escalation", |s| s.escalations == escalations)
            .await?;
        // Recorded, not reverted: there is no probation window.
        prop_assert_eq!(status.generation, model.generation);
        let failed = status.plugins.iter().find(|p| p.name == "fragile");
        prop_assert_eq!(failed.map(|p| p.state), Some(PluginState::Failed));
        prop_assert!(
            plugin.call("get", Value::Null).await.is_err(),
            "a failed plugin answers no call"
        );
        // The others serve on.
        let hits = self.runtime.plugin("hits").expect("runs");
        prop_assert_eq!(
            hits.call("get", Value::Null).await.ok(),
            Some(json!({ "count": model.hits.count }))
        );
        let outcome = joined(self.reload(model.same(&without).config()), "the reload").await?;
        model.engine_reloaded(&good, without, &outcome)?;
        Ok(())
    }

    /// Everything the model predicts, checked once the runtime has settled.
    async fn check(&self, model: &mut Model) -> Result<(), TestCaseError> {
        let status = self
            .until("a settled runtime", |status| {
                status.running_engines == 1
                    && status.child_actors == 1
                    && status.in_flight == 0
                    && status.retirements.retired >= model.retired
                    // A plugin that only a rolled-back stop-first reload added stops once the
                    // swap lets go of the plugins it held across its gap, just after it answers.
                    && status.plugins.len() == 1 + usize::from(model.vault.is_some())
                    && status
                        .plugins
                        .iter()
                        .all(|p| p.state == PluginState::Running)
            })
            .await?;
        prop_assert_eq!(status.state, RunState::Running);
        prop_assert_eq!(status.generation, model.generation, "generation");
        prop_assert_eq!(status.mode, Some(model.mode.name()), "swap mode");
        let retirements = &status.retirements;
        prop_assert_eq!(retirements.retired, model.retired, "retired engines");
        prop_assert_eq!(
            retirements.stop_failures,
            model.stop_failures,
            "failed stops: {:?}",
            retirements.last_failure
        );
        prop_assert_eq!(retirements.drain_overruns, 0);
        prop_assert_eq!(status.escalations, model.escalations, "escalations");

        let plugin = |name: &str| status.plugins.iter().find(|p| p.name == name);
        let hits = plugin("hits").expect("hits runs");
        prop_assert_eq!(hits.generation, model.hits.generation, "hits generation");
        prop_assert_eq!(hits.restarts, model.hits.restarts, "hits restarts");
        prop_assert!(plugin("fragile").is_none(), "no fragile plugin");
        let count = |name: &str| {
            let runtime = self.runtime.clone();
            let name = name.to_owned();
            async move {
                runtime
                    .plugin(&name)
                    .expect("runs")
                    .call("get", Value::Null)
                    .await
                    .expect("answers")["count"]
                    .as_i64()
            }
        };
        prop_assert_eq!(count("hits").await, Some(model.hits.count), "hits count");
        match (&model.vault, plugin("vault")) {
            (Some(vault), Some(status)) => {
                prop_assert_eq!(status.generation, vault.generation, "vault generation");
                prop_assert_eq!(count("vault").await, Some(vault.count), "vault count");
            }
            (None, None) => {}
            (expected, seen) => {
                return Err(TestCaseError::fail(format!(
                    "vault: expected {expected:?}, status shows {seen:?}"
                )));
            }
        }

        prop_assert_eq!(
            status.listeners,
            1 + usize::from(model.web2),
            "listening sockets"
        );
        prop_assert_eq!(
            self.served_version().await?,
            json!(model.version),
            "served version"
        );
        let web2 = status
            .listening()
            .into_iter()
            .find(|(name, _)| name == "web2")
            .map(|(_, address)| address);
        prop_assert_eq!(web2.is_some(), model.web2, "web2 listens: {:?}", web2);
        if let Some(address) = web2 {
            // A server that stays keeps its socket across every reload.
            if let Some(known) = &model.web2_address {
                prop_assert_eq!(known, &address, "web2 kept its socket");
            }
            let (code, body) = common::get(&format!("http://{address}/hello")).await;
            prop_assert_eq!(code, 200);
            prop_assert_eq!(&body["version"], &json!(model.version), "web2 version");
            model.web2_address = Some(address);
        }
        if let Some(closed) = model.web2_closed.take() {
            prop_assert!(
                tokio::net::TcpStream::connect(&closed).await.is_err(),
                "{} is still bound after web2 was removed",
                closed
            );
        }
        Ok(())
    }

    async fn end(&self, ending: Ending, model: &mut Model) -> Result<(), TestCaseError> {
        match ending {
            Ending::Shutdown => self.runtime.shutdown().await.expect("stops"),
            Ending::ShutdownDuringBuild => {
                let building = self.reload_waiting_in_build(model.same("building")).await?;
                let queued = self.reload(model.same("queued").config());
                self.until("a queued reload", |s| s.queued_reloads == 1)
                    .await?;
                self.runtime.shutdown().await.expect("stops");
                prop_assert_eq!(
                    joined(building, "the building reload").await?,
                    ReloadOutcome::Superseded
                );
                prop_assert_eq!(
                    joined(queued, "the queued reload").await?,
                    ReloadOutcome::Superseded
                );
            }
            Ending::ShutdownDuringSwap => {
                let hanging = EngineReload {
                    change: EngineChange::FailsToStart(How::Hang),
                    mode: model.mode,
                    flip_vault: false,
                    flip_web2: false,
                };
                let attempts = self.controls.start_attempts.load(Ordering::SeqCst);
                let swapping = self.reload(model.shape(&hanging, "swapping").config());
                // The toggle module starts before the hanging one: the swap is under way.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while self.controls.start_attempts.load(Ordering::SeqCst) == attempts {
                    prop_assert!(
                        tokio::time::Instant::now() < deadline,
                        "the swap never began"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                self.runtime.shutdown().await.expect("stops");
                // The swap finished before the runtime stopped, and says how it went.
                let outcome = joined(swapping, "the swapping reload").await?;
                model.engine_reloaded(&hanging, "swapping".to_owned(), &outcome)?;
            }
        }
        prop_assert!(self.runtime.status().await.is_err(), "the runtime stopped");
        let mut ports = vec![self.base.trim_start_matches("http://").to_owned()];
        ports.extend(model.web2_address.clone());
        for address in ports {
            prop_assert!(
                tokio::net::TcpStream::connect(&address).await.is_err(),
                "{} is still bound after shutdown",
                address
            );
        }
        Ok(())
    }
}

async fn run_case(ops: Vec<Op>, mode: Mode, ending: Ending) -> Result<(), TestCaseError> {
    let tasks = tokio::runtime::Handle::current().metrics();
    let before = tasks.num_alive_tasks();
    let (registry, _, controls) = common::plugin_registry();
    let mut model = Model {
        generation: 1,
        version: "v0".into(),
        next_version: 0,
        mode,
        stop_fault: None,
        hits: Counter {
            count: 0,
            generation: 1,
            restarts: 0,
        },
        hits_start: 0,
        vault: None,
        vault_export: None,
        web2: false,
        web2_address: None,
        web2_closed: None,
        retired: 0,
        stop_failures: 0,
        escalations: 0,
    };
    // Restores retried quickly, so that an outage costs the case little time.
    let restores = Backoff::new(Duration::from_millis(5), Duration::from_millis(20));
    let runtime = Arc::new(
        Runtime::builder(registry)
            .restore_backoff(restores)
            .start(model.same("v0").config())
            .await
            .expect("starts"),
    );
    let base = format!(
        "http://{}",
        runtime.status().await.unwrap().listening()[0].1
    );
    let harness = Harness {
        runtime: runtime.clone(),
        controls,
        base,
        client: common::client(),
    };
    harness.check(&mut model).await?;
    for (i, op) in ops.iter().enumerate() {
        let step = async {
            harness.apply(op, &mut model).await?;
            harness.check(&mut model).await
        };
        step.await
            .map_err(|error| TestCaseError::fail(format!("operation {i}, {op:?}: {error}")))?;
    }
    // Its one keep-alive connection served every check: no reload closed it.
    prop_assert_eq!(harness.client.connections(), 1);
    harness.end(ending, &mut model).await?;
    drop(harness);
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

/// 200 cases by default; `PROPTEST_CASES` asks for more.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        // A case takes a second or more: shrink for a while, not for hours.
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_runtime_behaves_like_its_model(
        ops in prop::collection::vec(op(), 30..40),
        mode in mode(),
        ending in ending(),
    ) {
        common::quiet_expected_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
        runtime.block_on(run_case(ops, mode, ending))?;
    }
}
