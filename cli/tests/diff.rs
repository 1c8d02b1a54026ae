//! Diff reload: a reload rebuilds and restarts only the modules it changes. Every instance
//! carries an id, so a test sees whether a module was carried over (same id, started once) or
//! replaced; every build, start and stop lands in a journal.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use swapvisor::actors::{Changes, PartChanges};
use swapvisor::config::{Config, ConfigErrors};
use swapvisor::extension::{Module, ModuleBuild, ModuleContext, ModuleError};
use swapvisor::{Registry, ReloadOutcome, ReloadRecord, Runtime, TryActivateResult};
use tokio::time::Instant;

use common::get;

/// Every build, start and stop of a `test.instance` module: "build c#3", "start c#3", ...
type Journal = Arc<Mutex<Vec<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InstanceSettings {
    /// Only makes two configs differ.
    #[allow(dead_code)]
    note: Value,
    #[serde(default)]
    fail_start: bool,
}

struct Instance {
    label: String,
    fail_start: bool,
    journal: Journal,
}

impl Instance {
    fn note(&self, event: &str) {
        let entry = format!("{event} {}", self.label);
        self.journal.lock().unwrap().push(entry);
    }
}

impl Module for Instance {
    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            if self.fail_start {
                self.note("fail");
                return Err(ModuleError::new("refuses to start"));
            }
            self.note("start");
            Ok(())
        })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async move {
            self.note("stop");
            Ok(())
        })
    }

    fn status(&self) -> serde_json::Map<String, Value> {
        let mut details = serde_json::Map::new();
        details.insert("instance".into(), json!(self.label));
        details
    }
}

fn registry() -> (Registry, Journal) {
    let journal: Journal = Arc::default();
    let next_id = Arc::new(AtomicU64::new(1));
    let mut registry = Registry::with_builtins();
    let shared = journal.clone();
    registry
        .contributing("tests", |r| {
            r.register_module("test.instance", move |build: &ModuleBuild<'_>| {
                let settings: InstanceSettings = build.settings()?;
                let id = next_id.fetch_add(1, Ordering::SeqCst);
                let instance = Instance {
                    label: format!("{}#{id}", build.name),
                    fail_start: settings.fail_start,
                    journal: shared.clone(),
                };
                instance.note("build");
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(instance))
            })
        })
        .unwrap();
    (registry, journal)
}

/// Four instance modules (`b` depends on `a`) and a server. `notes` gives each module's note
/// (`a`, `b`, `c`, `d` in order); `extra` is appended to the module list.
fn config(version: &str, notes: [&str; 4], extra: &str, mode: &str) -> Config {
    let [a, b, c, d] = notes;
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
  - {{ name: a, type: test.instance, config: {{ note: "{a}" }} }}
  - {{ name: b, type: test.instance, dependsOn: [a], config: {{ note: "{b}" }} }}
  - {{ name: c, type: test.instance, config: {{ note: "{c}" }} }}
  - {{ name: d, type: test.instance, config: {{ note: "{d}" }} }}
{extra}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
runtime: {{ reload: {{ mode: {mode} }} }}
"#
    );
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

const NOTES: [&str; 4] = ["a1", "b1", "c1", "d1"];

struct Running {
    runtime: Runtime,
    journal: Journal,
    base: String,
}

async fn start(mode: &str) -> Running {
    let (registry, journal) = registry();
    let runtime = Runtime::start(config("v1", NOTES, "", mode), registry)
        .await
        .expect("the first config activates");
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    Running {
        runtime,
        journal,
        base: format!("http://{address}"),
    }
}

impl Running {
    /// The journal since the last call.
    fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.journal.lock().unwrap())
    }

    /// Each module's instance label, as status shows it.
    async fn instances(&self) -> Vec<(String, String)> {
        let status = self.runtime.status().await.unwrap();
        status
            .modules
            .iter()
            .filter_map(|m| {
                let label = m.details.get("instance")?.as_str()?.to_owned();
                Some((m.name.clone(), label))
            })
            .collect()
    }

    /// Reloads to `config` and returns the record.
    async fn reload(&self, config: Config) -> ReloadRecord {
        self.runtime
            .reload(config)
            .await
            .expect("the runtime answers")
    }

    /// Waits until `count` replaced engines have finished retiring (drained and stopped).
    async fn retired(&self, count: u64) {
        common::wait_for_status(&self.runtime, "the old engine to retire", |s| {
            s.retirements.retired >= count
        })
        .await;
    }

    async fn version(&self) -> Value {
        let (code, body) = get(&format!("{}/hello", self.base)).await;
        assert_eq!(code, 200, "{body}");
        body["version"].clone()
    }
}

fn part(added: &[&str], changed: &[&str], removed: &[&str], kept: &[&str]) -> PartChanges {
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    PartChanges {
        added: names(added),
        changed: names(changed),
        removed: names(removed),
        kept: names(kept),
    }
}

fn modules_of(changes: &Option<Changes>) -> PartChanges {
    changes
        .as_ref()
        .and_then(|c| c.of("modules"))
        .cloned()
        .expect("the reload reports its module changes")
}

const LABELS_V1: [(&str, &str); 4] = [("a", "a#1"), ("b", "b#2"), ("c", "c#3"), ("d", "d#4")];

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, l)| ((*n).to_owned(), (*l).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_change_to_one_module_keeps_every_other_instance() {
    let running = start("start-first").await;
    assert_eq!(
        running.events(),
        ["build a#1", "build b#2", "build c#3", "build d#4"]
            .into_iter()
            .chain(["start a#1", "start b#2", "start c#3", "start d#4"])
            .collect::<Vec<_>>()
    );
    assert_eq!(running.instances().await, labels(&LABELS_V1));

    let record = running
        .reload(config("v2", ["a1", "b1", "c2", "d1"], "", "start-first"))
        .await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(
        modules_of(&record.changes),
        part(&[], &["c"], &[], &["a", "b", "d", "web"])
    );
    let pipelines = record.changes.as_ref().and_then(|c| c.of("pipelines"));
    assert_eq!(pipelines, Some(&part(&[], &["hello"], &[], &[])));
    assert_eq!(running.version().await, "v2");
    // Only c was built and started; the old c stops once the old engine has drained.
    running.retired(1).await;
    assert_eq!(running.events(), ["build c#5", "start c#5", "stop c#3"]);
    assert_eq!(
        running.instances().await,
        labels(&[("a", "a#1"), ("b", "b#2"), ("c", "c#5"), ("d", "d#4")])
    );
    // The history and status say the same.
    let status = running.runtime.status().await.unwrap();
    assert_eq!(status.last_reload.unwrap().changes, record.changes);

    // The same config again changes nothing at all.
    let again = running
        .reload(config("v2", ["a1", "b1", "c2", "d1"], "", "start-first"))
        .await;
    assert_eq!(again.outcome, ReloadOutcome::Unchanged { generation: 2 });
    assert!(running.events().is_empty());
    running.runtime.shutdown().await.unwrap();
    let mut stops = running.events();
    stops.sort();
    assert_eq!(stops, ["stop a#1", "stop b#2", "stop c#5", "stop d#4"]);
}

#[tokio::test]
async fn a_changed_dependency_restarts_its_dependents() {
    let running = start("start-first").await;
    running.events();
    let record = running
        .reload(config("v1", ["a2", "b1", "c1", "d1"], "", "start-first"))
        .await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(
        modules_of(&record.changes),
        part(&[], &["a", "b"], &[], &["c", "d", "web"])
    );
    assert_eq!(
        running.instances().await,
        labels(&[("a", "a#5"), ("b", "b#6"), ("c", "c#3"), ("d", "d#4")])
    );
    running.retired(1).await;
    // New ones start in dependency order; the old ones stop in reverse.
    assert_eq!(
        running.events(),
        [
            "build a#5",
            "build b#6",
            "start a#5",
            "start b#6",
            "stop b#2",
            "stop a#1"
        ]
    );
    running.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn added_and_removed_modules_start_and_stop_and_nothing_else_moves() {
    let running = start("start-first").await;
    running.events();
    let extra = "  - { name: e, type: test.instance, config: { note: e1 } }";
    let record = running
        .reload(config("v1", NOTES, extra, "start-first"))
        .await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(
        modules_of(&record.changes),
        part(&["e"], &[], &[], &["a", "b", "c", "d", "web"])
    );
    assert_eq!(running.events(), ["build e#5", "start e#5"]);

    let record = running.reload(config("v1", NOTES, "", "start-first")).await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 3 });
    assert_eq!(
        modules_of(&record.changes),
        part(&[], &[], &["e"], &["a", "b", "c", "d", "web"])
    );
    running.retired(2).await;
    assert_eq!(running.events(), ["stop e#5"]);
    assert_eq!(running.instances().await, labels(&LABELS_V1));
    running.runtime.shutdown().await.unwrap();
}

/// A changed module that fails to start: the reload rolls back, the modules it would have
/// carried never stopped, and the old engine serves on with its own instances.
async fn a_failing_changed_module_leaves_the_carried_ones_running(mode: &str) {
    let running = start(mode).await;
    running.events();
    let failing = "  - { name: e, type: test.instance, config: { note: e1, failStart: true } }";
    let record = running
        .reload(config("v2", ["a1", "b1", "c2", "d1"], failing, mode))
        .await;
    assert_eq!(
        record.outcome,
        ReloadOutcome::RolledBack {
            error: r#"module "e" failed to start: refuses to start"#.to_owned()
        }
    );
    assert_eq!(running.version().await, "v1");
    assert_eq!(running.instances().await, labels(&LABELS_V1));
    let events = running.events();
    let expected: &[&str] = if mode == "stop-first" {
        // Stop-first stops only what changes (c), and restarts it when it restores v1.
        &[
            "build c#5",
            "build e#6",
            "stop c#3",
            "start c#5",
            "fail e#6",
            "stop c#5",
            "start c#3",
        ]
    } else {
        &[
            "build c#5",
            "build e#6",
            "start c#5",
            "fail e#6",
            "stop c#5",
        ]
    };
    assert_eq!(events, expected);
    for carried in ["a#1", "b#2", "d#4"] {
        assert!(
            !events.iter().any(|e| e.ends_with(carried)),
            "{carried} was touched: {events:?}"
        );
    }

    // The carried modules still carry into the next good reload.
    let record = running.reload(config("v3", NOTES, "", mode)).await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(
        modules_of(&record.changes),
        part(&[], &[], &[], &["a", "b", "c", "d", "web"])
    );
    assert!(running.events().is_empty());
    assert_eq!(running.version().await, "v3");
    running.runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_changed_module_leaves_the_carried_ones_running_in_start_first_mode() {
    a_failing_changed_module_leaves_the_carried_ones_running("start-first").await;
}

#[tokio::test]
async fn a_failing_changed_module_leaves_the_carried_ones_running_in_stop_first_mode() {
    a_failing_changed_module_leaves_the_carried_ones_running("stop-first").await;
}

#[tokio::test]
async fn try_activate_reports_the_changes_and_touches_nothing() {
    let running = start("start-first").await;
    running.events();
    let extra = "  - { name: e, type: test.instance, config: { note: e1 } }";
    let verdict = running
        .runtime
        .try_activate(config("v1", ["a1", "b1", "c1", "d2"], extra, "start-first"))
        .await
        .unwrap();
    let TryActivateResult::BuildOk { types } = &verdict else {
        panic!("{verdict:?}");
    };
    let changes = types
        .changes
        .as_ref()
        .expect("try-activate reports changes");
    assert_eq!(
        changes.of("modules"),
        Some(&part(&["e"], &["d"], &[], &["a", "b", "c", "web"]))
    );
    let answer: Value = serde_json::from_str(&verdict.to_json()).unwrap();
    assert_eq!(answer["changes"]["modules"]["changed"], json!(["d"]));
    // Built, never started: only the changed and added modules were built.
    assert_eq!(running.events(), ["build d#5", "build e#6"]);
    assert_eq!(running.instances().await, labels(&LABELS_V1));
    running.runtime.shutdown().await.unwrap();
}
