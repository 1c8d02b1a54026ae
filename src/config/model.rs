//! The typed config, exactly as written.
//!
//! These types mirror the document an operator writes. They hold what was written and nothing
//! more: `${VAR}` references are still unexpanded and absent settings are still absent. Defaults
//! and environment expansion live in [`super::Resolved`], a separate value derived from this one,
//! so the parsed source can be shown, hashed and compared without surprises.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// A whole config: modules, pipelines, plugins and runtime settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Long-lived components (servers, stores, ...), built and started in dependency order.
    pub modules: Vec<ModuleSpec>,
    /// Named step sequences, each started by a trigger. Kept in document order.
    pub pipelines: Vec<PipelineSpec>,
    /// Plugin instances, each run as its own supervised actor.
    pub plugins: Vec<PluginSpec>,
    /// Settings of the runtime itself (reload mode, timeouts, plugin strategy).
    pub runtime: RuntimeSpec,
}

/// One `modules:` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSpec {
    /// Unique name; other modules and triggers refer to it.
    pub name: String,
    /// A registered module type, such as `http.server`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The type's own settings, checked by the type's factory.
    pub config: Value,
    /// Modules that must start before this one and stop after it.
    pub depends_on: Vec<String>,
}

/// One `pipelines:` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// The key the pipeline was written under.
    pub name: String,
    /// What runs the pipeline; a pipeline without one runs only through `execute`.
    pub trigger: Option<TriggerSpec>,
    /// The steps, run in order.
    pub steps: Vec<StepSpec>,
    /// Steps run when a step fails (`onError:`); they read the failure as `error`, and a
    /// response among them answers instead of the default 500.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_error: Vec<StepSpec>,
    /// How long one run may take before it is abandoned (an HTTP request answers 504); unset
    /// means [`PipelineSpec::DEFAULT_TIMEOUT`].
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How many bytes one run's templates may render in all (`maxRenderBytes`); unset means
    /// [`PipelineSpec::DEFAULT_MAX_RENDER_BYTES`]. A run past it fails (an HTTP request
    /// answers 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_render_bytes: Option<u32>,
    /// The store module whose transaction every run's steps work in (`transaction:`):
    /// committed when they succeed, rolled back when one fails or the run passes its time
    /// limit. See [`crate::extension::Transactions`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
}

impl PipelineSpec {
    /// The render budget of a run when the config sets none: 16 MiB.
    pub const DEFAULT_MAX_RENDER_BYTES: u32 = 16 * 1024 * 1024;
    /// The smallest `maxRenderBytes` a config may set.
    pub const MIN_MAX_RENDER_BYTES: u32 = 1024;

    /// The time limit of a run when the config sets none: as long as a client commonly waits.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

/// A pipeline's `trigger:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// A registered trigger type, such as `http` or `schedule`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The trigger type's own settings.
    pub config: Value,
}

/// One entry of a pipeline's `steps:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSpec {
    /// Unique within the pipeline; later steps read this step's output by this name.
    pub name: String,
    /// A registered step type, such as `step.set`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The step type's own settings; strings in it may hold `{{ templates }}`.
    pub config: Value,
    /// `if:`, a jq expression: the step runs only when it is truthy (its output is null
    /// otherwise).
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// One `plugins:` entry: a plugin instance and how it is restarted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// Unique instance name; steps call the plugin by this name.
    pub name: String,
    /// A plugin kind registered with the runtime, such as `counter` (its `type:`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The plugin's own settings.
    pub config: Value,
    /// How the instance is restarted when it fails.
    pub restart: RestartSpec,
}

/// A plugin's `restart:` settings, as written. Absent fields take the defaults documented in
/// docs/CONFIG.md when the config is resolved.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartSpec {
    /// `permanent`, `transient` or `temporary`, as in Erlang/OTP.
    pub policy: Option<RestartPolicy>,
    /// Restart intensity: more than this many restarts ...
    pub max_restarts: Option<u32>,
    /// ... within this period escalates.
    #[serde(with = "opt_duration")]
    pub within: Option<Duration>,
    /// Delay between restarts.
    pub backoff: BackoffSpec,
}

/// Exponential backoff between restarts, as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackoffSpec {
    /// First delay.
    #[serde(with = "opt_duration")]
    pub initial: Option<Duration>,
    /// Largest delay.
    #[serde(with = "opt_duration")]
    pub max: Option<Duration>,
}

/// When a failed plugin instance is restarted (Erlang/OTP restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Always restarted.
    Permanent,
    /// Restarted only when it exits abnormally.
    Transient,
    /// Never restarted.
    Temporary,
}

/// Which siblings restart with a failed plugin (Erlang/OTP strategies).
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartStrategy {
    /// Only the failed instance. The default.
    #[default]
    OneForOne,
    /// Every instance of the same config.
    OneForAll,
    /// The failed instance and those declared after it in the same config.
    RestForOne,
}

/// Named here for the sibling modules that read the model (`use super::model::*`).
pub(crate) use swapvisor_actors::SwapMode;

/// The `runtime:` section, as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// `runtime.reload`.
    pub reload: ReloadSpec,
    /// `runtime.plugins`.
    pub plugins: PluginsRuntimeSpec,
}

/// `runtime.reload`: how reloads are carried out, as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadSpec {
    /// `start-first` (default) or `stop-first`.
    pub mode: Option<SwapMode>,
    /// How long a replaced engine may finish in-flight requests.
    #[serde(with = "opt_duration")]
    pub drain_timeout: Option<Duration>,
    /// Longest time a build may take.
    #[serde(with = "opt_duration")]
    pub build_timeout: Option<Duration>,
    /// Longest time a start may take.
    #[serde(with = "opt_duration")]
    pub start_timeout: Option<Duration>,
    /// Longest time a graceful stop may take before it is abandoned.
    #[serde(with = "opt_duration")]
    pub stop_timeout: Option<Duration>,
    /// After an activation, how long a crash loop reverts to the last-known-good config.
    #[serde(with = "opt_duration")]
    pub probation: Option<Duration>,
}

/// `runtime.plugins`, as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginsRuntimeSpec {
    /// Restart strategy across plugin instances.
    pub strategy: Option<RestartStrategy>,
}

/// Serializes optional durations the way they are written (`250ms`, `5s`).
mod opt_duration {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_str(&humantime::format_duration(*d).to_string()),
            None => serializer.serialize_none(),
        }
    }
}
