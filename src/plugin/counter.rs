//! The built-in `counter` plugin: a count that survives reloads.
//!
//! It lives here, beside the trait it implements, because it is also the example of a plugin
//! (`swapvisor::plugin::Counter`, which `swapvisor-counter-plugin` serves as a process);
//! `builtin` registers it as the `counter` kind.
//!
//! Operations: `increment {by}` (default 1) and `get` answer `{"count": n}`; `crash` panics (to
//! exercise restarts); `exit` ends the instance normally (to exercise restart types). Settings:
//! `{start}` (default 0), the count of a fresh instance, and `{checkpoint}` (default false). A
//! reload hands the count to the new instance. A crash restart begins again from `start`, as
//! an OTP process re-initialises, unless `checkpoint: true`: then the counter checkpoints its
//! count after every change (before answering), and a crash restart, a probation revert or a
//! restart of the process (with a state folder) continues from the last count it answered.
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
use crate::extension::plugin::{Plugin, PluginCall, PluginContext, PluginError};

/// The built-in `counter` plugin kind: a count that survives reloads (see the module docs of
/// [`crate::plugin`]). `swapvisor-counter-plugin` serves it as a process plugin.
#[derive(Debug, Default)]
pub struct Counter {
    count: i64,
    /// Checkpoints the count after every change, once started.
    checkpoint: bool,
    context: Option<PluginContext>,
    /// Increments answered, once started in a runtime.
    #[cfg(feature = "runtime")]
    increments: Option<crate::extension::metrics::Counter>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    start: i64,
    #[serde(default)]
    checkpoint: bool,
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
        Ok(Box::new(Counter::with(&settings)))
    }

    /// A counter built from its settings (`{"start": n}`), or why they are wrong.
    pub fn from_settings(settings: &Value) -> Result<Self, String> {
        let settings: Settings = match settings {
            Value::Null => Settings::default(),
            other => serde_json::from_value(other.clone())
                .map_err(|e| format!("counter settings: {e}"))?,
        };
        Ok(Counter::with(&settings))
    }

    /// A fresh counter as `settings` ask, not started yet.
    fn with(settings: &Settings) -> Self {
        Counter {
            count: settings.start,
            checkpoint: settings.checkpoint,
            context: None,
            #[cfg(feature = "runtime")]
            increments: None,
        }
    }

    fn answer(&self) -> Value {
        json!({ "count": self.count })
    }

    /// Checkpoints the count, when its settings ask for that: before the answer, so that the
    /// count a caller was told is the one a restarted counter continues from.
    fn checkpoint(&self) {
        if let Some(context) = &self.context
            && let Err(error) = context.checkpoint(self.answer())
        {
            tracing::debug!(plugin = %context.name, %error, "the counter's checkpoint was not kept");
        }
    }
}

impl Plugin for Counter {
    fn kind(&self) -> &str {
        Self::KIND
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn start(&mut self, context: &PluginContext) -> BoxFuture<'_, Result<(), PluginError>> {
        if self.checkpoint {
            self.context = Some(context.clone());
        }
        #[cfg(feature = "runtime")]
        {
            let registered = context.metrics.counter(
                "swapvisor_plugin_increments_total",
                "Increments each `counter` plugin instance answered.",
            );
            match registered {
                Ok(increments) => self.increments = Some(increments),
                Err(error) => {
                    return Box::pin(std::future::ready(Err(PluginError::Failed(
                        error.to_string(),
                    ))));
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
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
                self.checkpoint();
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
