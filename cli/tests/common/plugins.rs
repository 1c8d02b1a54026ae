//! Plugin kinds and step types for the plugin tests, and the registry that holds them.

use super::*;

/// A plugin that journals its starts and stops ("start a", "stop a") and answers `ping`.
/// Settings: `{failStart, hangStart, failWhenSwitched, note}`: `failWhenSwitched` fails its
/// start while the controls' `fail_starts` is set; `note` only makes two specs differ.
struct JournalPlugin {
    name: String,
    fail_start: bool,
    hang_start: bool,
    fail_when: Option<Arc<std::sync::atomic::AtomicBool>>,
    journal: Journal,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JournalSettings {
    #[serde(default)]
    fail_start: bool,
    #[serde(default)]
    hang_start: bool,
    #[serde(default)]
    fail_when_switched: bool,
    #[serde(default)]
    #[allow(dead_code)]
    note: Value,
}

impl swapvisor::plugin::Plugin for JournalPlugin {
    fn kind(&self) -> &str {
        "test.journal"
    }

    fn version(&self) -> &str {
        "0.0.1"
    }

    fn start(
        &mut self,
        _context: &swapvisor::plugin::PluginContext,
    ) -> BoxFuture<'_, Result<(), swapvisor::plugin::PluginError>> {
        Box::pin(async move {
            if self.hang_start {
                std::future::pending::<()>().await;
            }
            let switched = self
                .fail_when
                .as_ref()
                .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst));
            if self.fail_start || switched {
                return Err(swapvisor::plugin::PluginError::Failed(format!(
                    "{} refuses to start",
                    self.name
                )));
            }
            self.journal
                .lock()
                .unwrap()
                .push(format!("start {}", self.name));
            Ok(())
        })
    }

    fn handle(
        &mut self,
        call: swapvisor::plugin::PluginCall,
    ) -> BoxFuture<'_, Result<Value, swapvisor::plugin::PluginError>> {
        let answer = Ok(serde_json::json!({ "pong": call.op }));
        Box::pin(std::future::ready(answer))
    }

    fn stop(&mut self) -> BoxFuture<'_, Result<(), swapvisor::plugin::PluginError>> {
        self.journal
            .lock()
            .unwrap()
            .push(format!("stop {}", self.name));
        Box::pin(async { Ok(()) })
    }
}

/// A plugin kind that contributes the step type `<kind>.hello` when `provides` is true.
struct Greeter {
    kind: &'static str,
    provides: bool,
}

impl swapvisor::plugin::Plugin for Greeter {
    fn kind(&self) -> &str {
        self.kind
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn register(
        &self,
        registry: &mut swapvisor::registry::Types,
    ) -> Result<(), swapvisor::registry::RegistryError> {
        if self.provides {
            registry.register_step("greet.hello", |_: &swapvisor::extension::StepBuild<'_>| {
                Ok::<Box<dyn swapvisor::extension::Step>, ConfigErrors>(Box::new(HelloStep))
            })?;
        }
        Ok(())
    }

    fn handle(
        &mut self,
        _call: swapvisor::plugin::PluginCall,
    ) -> BoxFuture<'_, Result<Value, swapvisor::plugin::PluginError>> {
        Box::pin(std::future::ready(Ok(Value::Null)))
    }
}

struct HelloStep;

impl swapvisor::extension::Step for HelloStep {
    fn run<'a>(
        &'a self,
        _context: &'a swapvisor::extension::StepContext<'a>,
    ) -> BoxFuture<'a, Result<Value, swapvisor::extension::StepError>> {
        Box::pin(async { Ok(serde_json::json!("hello")) })
    }
}

/// A counting plugin whose `migrate` and `export_state` behave as configured:
/// `{migrate: ok|error|panic|hang, export: ok|error|panic|hang}`.
struct Stateful {
    count: i64,
    migrate: String,
    export: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatefulSettings {
    #[serde(default = "ok")]
    migrate: String,
    #[serde(default = "ok")]
    export: String,
}

fn ok() -> String {
    "ok".to_owned()
}

impl swapvisor::plugin::Plugin for Stateful {
    fn kind(&self) -> &str {
        "test.stateful"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn handle(
        &mut self,
        call: swapvisor::plugin::PluginCall,
    ) -> BoxFuture<'_, Result<Value, swapvisor::plugin::PluginError>> {
        if call.op == "increment" {
            self.count += 1;
        }
        Box::pin(std::future::ready(Ok(
            serde_json::json!({ "count": self.count }),
        )))
    }

    fn export_state(
        &mut self,
    ) -> BoxFuture<'_, Result<Option<Value>, swapvisor::plugin::PluginError>> {
        Box::pin(async move {
            match self.export.as_str() {
                "error" => Err(swapvisor::plugin::PluginError::Failed(
                    "this state cannot be exported".into(),
                )),
                "panic" => panic!("export panics on purpose"),
                "hang" => std::future::pending().await,
                _ => Ok(Some(serde_json::json!(self.count))),
            }
        })
    }

    fn migrate(
        &mut self,
        previous: Value,
    ) -> BoxFuture<'_, Result<(), swapvisor::plugin::PluginError>> {
        Box::pin(async move {
            match self.migrate.as_str() {
                "error" => Err(swapvisor::plugin::PluginError::Failed(
                    "this state cannot be migrated".into(),
                )),
                "panic" => panic!("migrate panics on purpose"),
                "hang" => std::future::pending().await,
                _ => {
                    self.count = previous.as_i64().unwrap_or(0);
                    Ok(())
                }
            }
        })
    }
}

/// `test.panic {after}`: waits, then panics (a step that blows up mid-request).
struct PanicStep(Duration);

impl swapvisor::extension::Step for PanicStep {
    fn run<'a>(
        &'a self,
        _context: &'a swapvisor::extension::StepContext<'a>,
    ) -> BoxFuture<'a, Result<Value, swapvisor::extension::StepError>> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            panic!("the step panics on purpose");
        })
    }
}

/// The controlled registry plus the plugin kinds `test.journal`, `test.stateful`, `greeter`
/// (contributes the step type `greet.hello`) and `greeter-lite` (contributes nothing), and
/// the step type `test.panic {after}`.
pub(crate) fn plugin_registry() -> (Registry, Journal, Controls) {
    let (mut registry, journal, controls) = controlled_registry();
    let shared = journal.clone();
    let switch = controls.fail_starts.clone();
    registry
        .contributing("tests", |r| {
            r.register_plugin(
                "test.journal",
                move |build: &swapvisor::plugin::PluginBuild<'_>| {
                    let settings: JournalSettings = build.settings()?;
                    Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(
                        JournalPlugin {
                            name: build.name.to_owned(),
                            fail_start: settings.fail_start,
                            hang_start: settings.hang_start,
                            fail_when: settings.fail_when_switched.then(|| switch.clone()),
                            journal: shared.clone(),
                        },
                    ))
                },
            )?;
            r.register_plugin(
                "test.stateful",
                |build: &swapvisor::plugin::PluginBuild<'_>| {
                    let settings: StatefulSettings = build.settings()?;
                    Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(Stateful {
                        count: 0,
                        migrate: settings.migrate,
                        export: settings.export,
                    }))
                },
            )?;
            r.register_step(
                "test.panic",
                |build: &swapvisor::extension::StepBuild<'_>| {
                    let after = build
                        .config
                        .get("after")
                        .and_then(Value::as_str)
                        .unwrap_or("0ms");
                    let after = swapvisor::config::parse_duration(after)
                        .map_err(|m| swapvisor::config::ConfigError::new(build.place, m))?;
                    Ok::<Box<dyn swapvisor::extension::Step>, ConfigErrors>(Box::new(PanicStep(
                        after,
                    )))
                },
            )?;
            r.register_plugin("greeter", |_: &swapvisor::plugin::PluginBuild<'_>| {
                Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(Greeter {
                    kind: "greeter",
                    provides: true,
                }))
            })?;
            r.register_plugin("greeter-lite", |_: &swapvisor::plugin::PluginBuild<'_>| {
                Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(Greeter {
                    kind: "greeter-lite",
                    provides: false,
                }))
            })
        })
        .unwrap();
    (registry, journal, controls)
}
