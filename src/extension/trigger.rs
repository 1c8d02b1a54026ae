//! Triggers: what makes a pipeline run.
//!
//! A trigger type's factory turns the trigger's config into a [`TriggerBinding`]: either an
//! HTTP route on a named `http.server` module, or a [`TriggerTask`] that the engine runs from
//! start to stop (a schedule, a queue consumer, ...).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::watch;

use super::error::ExecuteError;
use crate::config::ConfigErrors;

/// How a trigger attaches its pipeline to the engine.
pub enum TriggerBinding {
    /// Serve the pipeline on an `http.server` module.
    Http(HttpRoute),
    /// Run a task while the engine runs.
    Task(Box<dyn TriggerTask>),
}

impl std::fmt::Debug for TriggerBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(route) => f.debug_tuple("Http").field(route).finish(),
            Self::Task(_) => f.write_str("Task(..)"),
        }
    }
}

impl std::fmt::Debug for PipelineRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRunner")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

/// An HTTP route: which server, which method, which path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Name of an `http.server` module.
    pub server: String,
    /// Upper-case method, or `*` for any.
    pub method: String,
    /// The path; segments written `{name}` capture into `request.params.name`.
    pub path: String,
}

/// A trigger that runs alongside the engine, such as a schedule.
pub trait TriggerTask: Send + Sync + 'static {
    /// Runs until `stop` fires, calling `runner` whenever the pipeline should run. The engine
    /// spawns this after every module has started and awaits it before modules stop.
    fn run(&self, runner: PipelineRunner, stop: StopSignal) -> BoxFuture<'static, ()>;
}

/// Runs the pipeline `input` is for; answers with its last step's output.
type RunPipeline = dyn Fn(Value) -> BoxFuture<'static, Result<Value, ExecuteError>> + Send + Sync;

/// Runs one pipeline of the engine that started the trigger.
#[derive(Clone)]
pub struct PipelineRunner {
    pipeline: Arc<str>,
    run: Arc<RunPipeline>,
}

impl PipelineRunner {
    /// A runner of the pipeline named `pipeline`, which `run` runs.
    pub(crate) fn new(
        pipeline: &str,
        run: impl Fn(Value) -> BoxFuture<'static, Result<Value, ExecuteError>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            pipeline: Arc::from(pipeline),
            run: Arc::new(run),
        }
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Runs the pipeline with `input` as `request`; returns the last step's output.
    pub async fn run(&self, input: Value) -> Result<Value, ExecuteError> {
        (self.run)(input).await
    }
}

/// Fires once when the engine stops its triggers.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// A signal that fires when `stop` turns true.
    pub(crate) fn new(stop: watch::Receiver<bool>) -> Self {
        Self(stop)
    }

    /// Waits until the engine asks the trigger to stop.
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// What a factory gets to build one trigger.
#[derive(Debug)]
pub struct TriggerBuild<'a> {
    /// The pipeline the trigger runs.
    pub pipeline: &'a str,
    /// The trigger's type, as registered.
    pub type_name: &'a str,
    /// The entry's `config:`, with `${VAR}` already expanded.
    pub config: &'a serde_json::Value,
    /// The place of `config` in the document, for errors.
    pub place: &'a str,
}

/// Builds triggers of one type. Closures `Fn(&TriggerBuild) -> Result<TriggerBinding, _>`
/// are factories.
pub trait TriggerFactory: Send + Sync + 'static {
    /// Builds what `build` describes, or explains with places what is wrong with its
    /// config. No outside effects.
    fn build(&self, build: &TriggerBuild<'_>) -> Result<TriggerBinding, ConfigErrors>;
}

super::settings::factory_impls!(TriggerBuild, TriggerFactory, TriggerBinding);
