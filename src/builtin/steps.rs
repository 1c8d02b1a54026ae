//! The built-in steps: `step.set`, `step.log`, `step.json_response`, `step.delay` and
//! `step.fail`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::template::Template;
use crate::extension::{Step, StepBuild, StepContext, StepError};
use crate::registry::{Registry, RegistryError};

pub(super) fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.register_step("step.set", build_set)?;
    registry.register_step("step.log", build_log)?;
    registry.register_step("step.json_response", build_json_response)?;
    registry.register_step("step.delay", build_delay)?;
    registry.register_step("step.fail", build_fail)?;
    registry.register_step("step.plugin_call", build_plugin_call)
}

/// `step.set {values}`: outputs `values` with its templates rendered.
struct Set {
    values: Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSettings {
    values: serde_json::Map<String, Value>,
}

fn build_set(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: SetSettings = build.settings()?;
    Ok(Box::new(Set {
        values: build.template("values", &Value::Object(settings.values))?,
    }))
}

impl Step for Set {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let output = self
            .values
            .try_render(&context.scope())
            .map_err(StepError::from);
        Box::pin(std::future::ready(output))
    }
}

/// `step.log {message, level}`: writes a tracing event; outputs `{"message": text}`.
struct Log {
    message: Template,
    level: LogLevel,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSettings {
    message: String,
    #[serde(default)]
    level: LogLevel,
}

fn build_log(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: LogSettings = build.settings()?;
    Ok(Box::new(Log {
        message: build.template("message", &Value::String(settings.message))?,
        level: settings.level,
    }))
}

impl Step for Log {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let message = self.message.render_string(&context.scope());
        let (pipeline, step) = (context.pipeline, context.step);
        // The message comes from the config and the request: no newline of it reaches the log.
        let line = super::log_text::log_safe(&message);
        match self.level {
            LogLevel::Trace => tracing::trace!(pipeline, step, "{line}"),
            LogLevel::Debug => tracing::debug!(pipeline, step, "{line}"),
            LogLevel::Info => tracing::info!(pipeline, step, "{line}"),
            LogLevel::Warn => tracing::warn!(pipeline, step, "{line}"),
            LogLevel::Error => tracing::error!(pipeline, step, "{line}"),
        }
        Box::pin(std::future::ready(Ok(json!({ "message": message }))))
    }
}

/// `step.json_response {status, body, headers}`: the pipeline's HTTP response.
struct JsonResponse {
    status: u16,
    body: Template,
    headers: Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonResponseSettings {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    body: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn ok() -> u16 {
    200
}

fn build_json_response(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: JsonResponseSettings = build.settings()?;
    if !(100..=599).contains(&settings.status) {
        return Err(ConfigError::new(
            place::field(build.place, "status"),
            format!(
                "HTTP status {} is out of range (100 to 599)",
                settings.status
            ),
        )
        .into());
    }
    let mut errors = ConfigErrors::default();
    for name in settings.headers.keys() {
        if hyper::header::HeaderName::try_from(name.as_str()).is_err() {
            errors.push(
                place::key(&place::field(build.place, "headers"), name),
                format!("{name:?} is not a valid HTTP header name"),
            );
        }
    }
    let headers = Value::Object(
        settings
            .headers
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    );
    let step = JsonResponse {
        status: settings.status,
        body: build.template("body", &settings.body)?,
        headers: build.template("headers", &headers)?,
    };
    errors.into_result(Box::new(step) as Box<dyn Step>)
}

impl Step for JsonResponse {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let scope = context.scope();
        // Not `json!`: it would copy the rendered headers and body again through `to_value`.
        let output: Map<String, Value> = [
            ("status", Value::from(self.status)),
            ("headers", self.headers.render(&scope)),
            ("body", self.body.render(&scope)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        // A body cut short by the run's render budget must not go out as the response.
        let output = scope.budget.check().map(|()| Value::Object(output));
        Box::pin(std::future::ready(output.map_err(StepError::from)))
    }

    fn is_response(&self) -> bool {
        true
    }
}

/// `step.delay {duration}`: waits, then outputs `{"delayedMs": n}`.
struct Delay {
    duration: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelaySettings {
    duration: String,
}

fn build_delay(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: DelaySettings = build.settings()?;
    let duration = parse_duration(&settings.duration)
        .map_err(|message| ConfigError::new(place::field(build.place, "duration"), message))?;
    Ok(Box::new(Delay { duration }))
}

impl Step for Delay {
    fn run<'a>(&'a self, _context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            tokio::time::sleep(self.duration).await;
            Ok(json!({ "delayedMs": self.duration.as_millis() as u64 }))
        })
    }
}

/// `step.fail {message}`: fails the pipeline with the rendered message.
struct Fail {
    message: Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailSettings {
    message: String,
}

fn build_fail(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: FailSettings = build.settings()?;
    Ok(Box::new(Fail {
        message: build.template("message", &Value::String(settings.message))?,
    }))
}

impl Step for Fail {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let message = self.message.render_string(&context.scope());
        Box::pin(std::future::ready(Err(StepError::new(message))))
    }
}

/// `step.plugin_call {plugin, op, args}`: calls a plugin instance; outputs its answer.
struct PluginCallStep {
    plugin: String,
    op: String,
    args: Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginCallSettings {
    plugin: String,
    op: String,
    #[serde(default)]
    args: Value,
}

fn build_plugin_call(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: PluginCallSettings = build.settings()?;
    if !build.plugins.contains(&settings.plugin) {
        return Err(ConfigError::new(
            place::field(build.place, "plugin"),
            crate::config::unknown_name(
                "plugin",
                &settings.plugin,
                "plugins",
                build.plugins.iter().map(String::as_str),
            ),
        )
        .into());
    }
    Ok(Box::new(PluginCallStep {
        args: build.template("args", &settings.args)?,
        plugin: settings.plugin,
        op: settings.op,
    }))
}

impl Step for PluginCallStep {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        match self.args.try_render(&context.scope()) {
            Ok(args) => call_plugin(context, &self.plugin, &self.op, args),
            Err(exceeded) => Box::pin(std::future::ready(Err(exceeded.into()))),
        }
    }
}

/// A step's call of `op` on the plugin instance `plugin`: its answer is the step's output.
pub(super) fn call_plugin<'a>(
    context: &'a StepContext<'a>,
    plugin: &'a str,
    op: &'a str,
    args: Value,
) -> BoxFuture<'a, Result<Value, StepError>> {
    Box::pin(async move {
        context
            .services
            .plugins()
            .call(plugin, op, args)
            .await
            .map_err(|e| StepError::new(format!("plugin {plugin:?} {op}: {e}")))
    })
}
