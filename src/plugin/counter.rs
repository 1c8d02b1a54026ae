//! The built-in `counter` plugin: a count that survives reloads.
//!
//! It lives here, beside the trait it implements, because it is also the example of a plugin
//! (`swapvisor::plugin::Counter`, which `swapvisor-counter-plugin` serves as a process);
//! `builtin` registers it as the `counter` kind.
//!
//! Operations: `increment {by}` (default 1) and `get` answer `{"count": n}`; `crash` panics (to
//! exercise restarts); `exit` ends the instance normally (to exercise restart types). Settings:
//! `{start}` (default 0), the count of a fresh instance. A reload hands the count to the new
//! instance; a crash restart begins again from `start`, as an OTP process re-initialises.
//!
//! Run in process, each instance counts the increments it answered in
//! `swapvisor_plugin_increments_total{plugin="<name>"}` (through its
//! [`MetricsHandle`](crate::extension::metrics::MetricsHandle)): a reload's new instance
//! continues the old one's series, as it continues its count.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

#[cfg(feature = "runtime")]
use crate::config::ConfigErrors;
#[cfg(feature = "runtime")]
use crate::extension::plugin::PluginBuild;
use crate::extension::plugin::{Plugin, PluginCall, PluginError};

/// The built-in `counter` plugin kind: a count that survives reloads (see the module docs of
/// [`crate::plugin`]). `swapvisor-counter-plugin` serves it as a process plugin.
#[derive(Debug, Default)]
pub struct Counter {
    count: i64,
    /// Increments answered, once started in a runtime.
    #[cfg(feature = "runtime")]
    increments: Option<crate::extension::metrics::Counter>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    start: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Increment {
    #[serde(default = "one")]
    by: i64,
}

const OPERATIONS: [&str; 4] = ["increment", "get", "crash", "exit"];

fn one() -> i64 {
    1
}

impl Counter {
    /// The plugin kind's name.
    pub(crate) const KIND: &'static str = "counter";

    #[cfg(feature = "runtime")]
    pub(crate) fn build(build: &PluginBuild<'_>) -> Result<Box<dyn Plugin>, ConfigErrors> {
        let settings: Settings = build.settings()?;
        Ok(Box::new(Counter::starting_at(settings.start)))
    }

    /// A counter built from its settings (`{"start": n}`), or why they are wrong.
    pub fn from_settings(settings: &Value) -> Result<Self, String> {
        let settings: Settings = match settings {
            Value::Null => Settings::default(),
            other => serde_json::from_value(other.clone())
                .map_err(|e| format!("counter settings: {e}"))?,
        };
        Ok(Counter::starting_at(settings.start))
    }

    /// A fresh counter at `count`, its metric not registered yet.
    fn starting_at(count: i64) -> Self {
        Counter {
            count,
            #[cfg(feature = "runtime")]
            increments: None,
        }
    }

    fn answer(&self) -> Value {
        json!({ "count": self.count })
    }
}

impl Plugin for Counter {
    fn kind(&self) -> &str {
        Self::KIND
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    #[cfg(feature = "runtime")]
    fn start(
        &mut self,
        context: &crate::extension::plugin::PluginContext,
    ) -> BoxFuture<'_, Result<(), PluginError>> {
        let registered = context.metrics.counter(
            "swapvisor_plugin_increments_total",
            "Increments each `counter` plugin instance answered.",
        );
        let started = match registered {
            Ok(increments) => {
                self.increments = Some(increments);
                Ok(())
            }
            Err(error) => Err(PluginError::Failed(error.to_string())),
        };
        Box::pin(std::future::ready(started))
    }

    fn handle(&mut self, call: PluginCall) -> BoxFuture<'_, Result<Value, PluginError>> {
        let result = match call.op.as_str() {
            "increment" => {
                let args: Increment = if call.args.is_null() {
                    Increment { by: 1 }
                } else {
                    match call.args() {
                        Ok(args) => args,
                        Err(error) => return Box::pin(std::future::ready(Err(error))),
                    }
                };
                self.count = self.count.saturating_add(args.by);
                #[cfg(feature = "runtime")]
                if let Some(increments) = &self.increments {
                    increments.inc();
                }
                Ok(self.answer())
            }
            "get" => Ok(self.answer()),
            "crash" => panic!("counter crashed on request (count was {})", self.count),
            "exit" => Err(PluginError::Exit),
            other => Err(PluginError::unknown_op(other, &OPERATIONS)),
        };
        Box::pin(std::future::ready(result))
    }

    fn export_state(&mut self) -> BoxFuture<'_, Result<Option<Value>, PluginError>> {
        Box::pin(std::future::ready(Ok(Some(self.answer()))))
    }

    fn operations(&self) -> Vec<&str> {
        OPERATIONS.to_vec()
    }

    fn migrate(&mut self, previous: Value) -> BoxFuture<'_, Result<(), PluginError>> {
        let migrated = match previous.get("count").and_then(Value::as_i64) {
            Some(count) => {
                self.count = count;
                Ok(())
            }
            None => Err(PluginError::Failed(format!(
                "expected {{\"count\": n}} from the previous counter, got {previous}"
            ))),
        };
        Box::pin(std::future::ready(migrated))
    }
}
