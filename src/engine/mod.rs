//! The engine: one config, built into modules and pipelines, started and stopped as a whole.
//!
//! An engine's life has three steps, and only the last two touch the outside world:
//!
//! 1. [`Engine::build`] checks the config against the [`Registry`] and constructs every
//!    module, step and trigger. It binds no port and spawns no task, so building is safe to do
//!    while another engine serves: that is what try-activate and reload rely on.
//! 2. [`Engine::start`] starts modules in dependency order, then the trigger tasks. If module
//!    *k* fails, the *k − 1* already started are stopped again, in reverse order, and the error
//!    names module *k*.
//! 3. [`Engine::stop`] stops the trigger tasks, then the modules in reverse order, each given
//!    until the deadline.
//!
//! Between start and stop, [`Engine::execute`] runs a pipeline, and HTTP requests arriving on
//! the engine's listeners run the pipelines routed to them.
//!
//! ```
//! # tokio_test_block_on(async {
//! use serde_json::json;
//! use swapvisor::{Config, Engine, Registry};
//!
//! let config = Config::parse(br#"
//! pipelines:
//!   hello:
//!     steps:
//!       - name: greet
//!         type: step.set
//!         config: { values: { message: "hello {{ request.name }}" } }
//! "#).unwrap();
//! let engine = Engine::build(&config, &Registry::with_builtins()).await.unwrap();
//! engine.start().await.unwrap();
//! let output = engine.execute("hello", json!({"name": "ada"})).await.unwrap();
//! assert_eq!(output, json!({"message": "hello ada"}));
//! engine.stop_now().await.unwrap();
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Runtime::new().unwrap().block_on(f)
//! # }
//! ```

mod error;
mod http;
mod module;
mod pipeline;
mod plan;
mod services;
mod settings;
mod step;
pub mod template;
mod trigger;
mod unit;

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Map, Value};
use swapvisor_actors::guard::{self, Interrupted};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use error::{BuildError, ExecuteError, ModuleError, Stage, StartError, StepError, StopError};
pub use http::{MAX_BODY_BYTES, json_response};
pub use module::{Module, ModuleBuild, ModuleContext, ModuleFactory};
pub use pipeline::{Execution, Pipeline};
pub use plan::TypesUsed;
pub use services::{EngineCensus, Services};
pub use settings::decode_settings;
pub use step::{Step, StepBuild, StepContext, StepFactory};
pub use trigger::{
    HttpRoute, PipelineRunner, StopSignal, TriggerBinding, TriggerBuild, TriggerFactory,
    TriggerTask,
};
pub use unit::{EngineContext, EngineSpec};

pub(crate) use plan::plugin_swap_settings;

use crate::config::{Config, ConfigErrors, DocumentLimits, EnvLookup, Resolved, process_env};
use crate::net::{HttpDispatch, HttpRequest, HttpResponse, ListenerKey};
use crate::plugin::Attachment;
use crate::registry::Registry;

/// A built engine. Cheap to clone: clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    config: Arc<Config>,
    hash: String,
    plan: plan::Plan,
    services: Services,
    lifecycle: tokio::sync::Mutex<Lifecycle>,
    state: std::sync::Mutex<EngineState>,
}

#[derive(Default)]
struct Lifecycle {
    /// The plugin instances this engine attached to (before any module started).
    plugins: Option<Attachment>,
    /// How many modules (a prefix of the start order) are started.
    started: usize,
    triggers: Option<(watch::Sender<bool>, JoinSet<()>)>,
}

/// Where an engine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineState {
    /// Built, not started.
    Built,
    /// Starting its modules.
    Starting,
    /// Every module started.
    Running,
    /// Stopping its modules.
    Stopping,
    /// Stopped (after running, or after a failed start).
    Stopped,
}

/// One module as shown in status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleStatus {
    /// The module's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `started` or `stopped`.
    pub state: &'static str,
    /// Type-specific fields, such as `listening` for `http.server`.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("hash", &self.inner.hash)
            .field("state", &self.state())
            .finish()
    }
}

impl Engine {
    /// Builds an engine for use on its own, with the process environment and a private
    /// listener pool. No outside effects.
    pub async fn build(config: &Config, registry: &Registry) -> Result<Engine, BuildError> {
        Self::build_with(
            Arc::new(config.clone()),
            registry,
            Services::standalone(),
            &process_env,
        )
        .await
    }

    /// Builds an engine with the given services and environment. No outside effects.
    pub async fn build_with(
        config: Arc<Config>,
        registry: &Registry,
        services: Services,
        env: EnvLookup<'_>,
    ) -> Result<Engine, BuildError> {
        Self::build_collecting(config, ConfigErrors::default(), registry, services, env).await
    }

    /// Parses `source` (YAML or JSON) and builds it, reporting every problem of the document
    /// and of the build together. No outside effects.
    pub async fn build_from_source(
        source: &[u8],
        limits: &DocumentLimits,
        registry: &Registry,
        services: Services,
        env: EnvLookup<'_>,
    ) -> Result<Engine, BuildError> {
        let (config, errors) = Config::parse_collecting(source, limits)?;
        Self::build_collecting(Arc::new(config), errors, registry, services, env).await
    }

    pub(crate) async fn build_collecting(
        config: Arc<Config>,
        errors: ConfigErrors,
        registry: &Registry,
        services: Services,
        env: EnvLookup<'_>,
    ) -> Result<Engine, BuildError> {
        let plan = plan::plan(&config, registry, env, errors)?;
        for module in &plan.modules {
            let message = match guard::run(None, || module.module.prepare()).await {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.0,
                Err(interrupted) => interrupted.to_string(),
            };
            return Err(BuildError::Module {
                module: module.name.clone(),
                message,
            });
        }
        let inner = Arc::new(EngineInner {
            hash: config.hash(),
            config,
            plan,
            services,
            lifecycle: tokio::sync::Mutex::new(Lifecycle::default()),
            state: std::sync::Mutex::new(EngineState::Built),
        });
        // An engine used on its own serves its own listeners; in a runtime the pool already
        // routes to whichever engine is live.
        let weak = Arc::downgrade(&inner);
        inner
            .services
            .listeners()
            .set_dispatch(Arc::new(OwnDispatch(weak)));
        Ok(Engine { inner })
    }

    /// The config as written.
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// The config with `${VAR}` expanded and defaults applied.
    pub fn resolved(&self) -> &Resolved {
        &self.inner.plan.resolved
    }

    /// The config's content hash.
    pub fn config_hash(&self) -> &str {
        &self.inner.hash
    }

    /// The module, step and trigger types this engine's config uses.
    pub fn types_used(&self) -> &TypesUsed {
        &self.inner.plan.types
    }

    /// The registry this engine's config was checked against (with plugin contributions).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.plan.registry
    }

    /// Checks that `provided` (the types a reloaded instance of plugin `name` would contribute)
    /// still covers every plugin-contributed type this engine uses; explains what would be
    /// lost otherwise.
    pub fn check_plugin_types(&self, name: &str, provided: &Registry) -> Result<(), String> {
        let plan = &self.inner.plan;
        let Some(old_kind) = plan.plugin_kinds.get(name) else {
            return Ok(());
        };
        let still_there = plan
            .plugin_kinds
            .iter()
            .any(|(other, kind)| other != name && kind == old_kind);
        let lost: Vec<String> = plan
            .plugin_type_uses
            .iter()
            .filter(|u| &u.plugin_kind == old_kind && !still_there)
            .filter(|u| provided.contributor_of(u.kind, &u.type_name).is_none())
            .map(|u| format!("{} type {:?} (used by {})", u.kind, u.type_name, u.place))
            .collect();
        if lost.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "reloading plugin {name:?} would remove types the running config still uses: {}",
                lost.join("; ")
            ))
        }
    }

    /// The services this engine was built with.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Where the engine is in its life.
    pub fn state(&self) -> EngineState {
        *self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: EngineState) {
        let previous = std::mem::replace(
            &mut *self.inner.state.lock().unwrap_or_else(|e| e.into_inner()),
            state,
        );
        // The services count running engines, so status can show how many are live at once.
        let census = self.inner.services.census();
        match (
            previous == EngineState::Running,
            state == EngineState::Running,
        ) {
            (false, true) => census.started(),
            (true, false) => census.stopped(),
            _ => {}
        }
    }

    /// Starts the modules in dependency order, then the trigger tasks, giving each module
    /// until the configured `startTimeout`.
    pub async fn start(&self) -> Result<(), StartError> {
        let deadline = Instant::now() + self.resolved().settings.reload.start_timeout;
        self.start_by(deadline).await
    }

    /// Starts the modules in dependency order, each given until `deadline`. If one fails,
    /// panics or runs past the deadline, the modules already started are stopped in reverse
    /// order and the error names the one that failed.
    pub async fn start_by(&self, deadline: Instant) -> Result<(), StartError> {
        let mut lifecycle = self.inner.lifecycle.lock().await;
        // A stopped engine may start again: a stop-first swap restores the previous engine so.
        if !matches!(self.state(), EngineState::Built | EngineState::Stopped) {
            return Err(StartError {
                kind: "engine",
                module: String::new(),
                message: format!("the engine cannot start from state {:?}", self.state()),
            });
        }
        self.set_state(EngineState::Starting);
        // Plugins first: modules and steps may call them from the moment they start.
        if !self.inner.plan.plugins.is_empty() {
            let plan = &self.inner.plan;
            let strategy = plan.resolved.settings.plugin_strategy;
            let plugins = self.inner.services.plugins();
            // Filled step by step, so that a start cut short by the deadline still knows what
            // to give back.
            let mut attachment = Attachment::default();
            let attach = plugins.attach(&plan.plugins, strategy, &plan.registry, &mut attachment);
            let (failure, timed_out) = match tokio::time::timeout_at(deadline, attach).await {
                Ok(Ok(())) => (None, false),
                Ok(Err(failure)) => (Some(failure), false),
                Err(_) => {
                    let why = "did not start before the start timeout".to_owned();
                    (Some((attachment.last_name(), why)), true)
                }
            };
            match failure {
                None => lifecycle.plugins = Some(attachment),
                Some((plugin, message)) => {
                    let rollback_deadline =
                        guard::deadline_in(self.resolved().settings.reload.stop_timeout);
                    if timed_out {
                        // What timed out is still finishing in the background; undoing it
                        // waits for that, so it runs there too. It holds the attach lock,
                        // so the next engine to attach waits for it.
                        let plugins = plugins.clone();
                        tokio::spawn(async move {
                            plugins.detach(attachment, true, rollback_deadline).await;
                        });
                    } else {
                        plugins.detach(attachment, true, rollback_deadline).await;
                    }
                    self.set_state(EngineState::Stopped);
                    return Err(StartError {
                        kind: "plugin",
                        module: plugin,
                        message,
                    });
                }
            }
        }
        for (k, module) in self.inner.plan.modules.iter().enumerate() {
            let context = ModuleContext {
                name: module.name.clone(),
                services: self.inner.services.clone(),
            };
            let started = guard::run(Some(deadline), || module.module.start(&context)).await;
            let message = match started {
                Ok(Ok(())) => {
                    lifecycle.started = k + 1;
                    tracing::debug!(module = %module.name, "module started");
                    continue;
                }
                Ok(Err(error)) => error.0,
                Err(Interrupted::Overran) => "did not start before the start timeout".to_owned(),
                Err(panicked) => panicked.to_string(),
            };
            tracing::warn!(module = %module.name, error = %message, "module failed to start; stopping the modules started before it");
            let rollback_deadline = Instant::now() + self.resolved().settings.reload.stop_timeout;
            if let Err(stop_error) = self
                .tear_down(&mut lifecycle, rollback_deadline, true)
                .await
            {
                tracing::warn!(error = %stop_error, "stopping after a failed start was not clean");
            }
            self.set_state(EngineState::Stopped);
            return Err(StartError {
                kind: "module",
                module: module.name.clone(),
                message,
            });
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (pipeline, task) in &self.inner.plan.tasks {
            let runner = PipelineRunner {
                pipeline: pipeline.clone(),
                services: self.inner.services.clone(),
            };
            tasks.spawn(task.run(runner, StopSignal(stopped.clone())));
        }
        lifecycle.triggers = Some((stop, tasks));
        self.set_state(EngineState::Running);
        Ok(())
    }

    /// Stops the trigger tasks, then every started module in reverse order, each given until
    /// `deadline`. Every module is asked to stop even when an earlier one fails. Stopping an
    /// engine that is not running does nothing.
    pub async fn stop(&self, deadline: Instant) -> Result<(), StopError> {
        let mut lifecycle = self.inner.lifecycle.lock().await;
        if lifecycle.started == 0 && lifecycle.triggers.is_none() && lifecycle.plugins.is_none() {
            if self.state() != EngineState::Built {
                self.set_state(EngineState::Stopped);
            }
            return Ok(());
        }
        self.set_state(EngineState::Stopping);
        if let Some((stop, mut tasks)) = lifecycle.triggers.take() {
            let _ = stop.send(true);
            let finished = tokio::time::timeout_at(deadline, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if finished.is_err() {
                tasks.shutdown().await;
            }
        }
        let result = self.tear_down(&mut lifecycle, deadline, false).await;
        self.set_state(EngineState::Stopped);
        result
    }

    /// Stops the started modules in reverse order, then detaches the plugins (last: modules
    /// may call them while they stop). With `rollback` (a failed start), plugins this engine
    /// reloaded go back to their previous spec.
    async fn tear_down(
        &self,
        lifecycle: &mut Lifecycle,
        deadline: Instant,
        rollback: bool,
    ) -> Result<(), StopError> {
        let result = self.stop_modules(lifecycle, deadline).await;
        if let Some(attachment) = lifecycle.plugins.take() {
            self.inner
                .services
                .plugins()
                .detach(attachment, rollback, deadline)
                .await;
        }
        result
    }

    /// Stops with the configured `stopTimeout` as the deadline.
    pub async fn stop_now(&self) -> Result<(), StopError> {
        let deadline = Instant::now() + self.resolved().settings.reload.stop_timeout;
        self.stop(deadline).await
    }

    async fn stop_modules(
        &self,
        lifecycle: &mut Lifecycle,
        deadline: Instant,
    ) -> Result<(), StopError> {
        let mut failures = Vec::new();
        while lifecycle.started > 0 {
            lifecycle.started -= 1;
            let module = &self.inner.plan.modules[lifecycle.started];
            let stopped = guard::run(Some(deadline), || module.module.stop(deadline)).await;
            let message = match stopped {
                Ok(Ok(())) => {
                    tracing::debug!(module = %module.name, "module stopped");
                    continue;
                }
                Ok(Err(error)) => error.0,
                Err(Interrupted::Overran) => "did not stop before the deadline".to_owned(),
                Err(panicked) => panicked.to_string(),
            };
            tracing::warn!(module = %module.name, error = %message, "module failed to stop");
            failures.push((module.name.clone(), message));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StopError { failures })
        }
    }

    /// Runs the pipeline `name` with `input` as `request`, and returns the last step's output.
    pub async fn execute(&self, name: &str, input: Value) -> Result<Value, ExecuteError> {
        self.run(name, &input).await.map(Execution::output)
    }

    /// Runs the pipeline `name` and returns every step's output.
    pub async fn run(&self, name: &str, input: &Value) -> Result<Execution, ExecuteError> {
        let pipeline = self
            .pipeline(name)
            .ok_or_else(|| ExecuteError::UnknownPipeline {
                name: name.to_owned(),
                available: self
                    .inner
                    .plan
                    .pipelines
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        pipeline.run(input, &self.inner.services).await
    }

    fn pipeline(&self, name: &str) -> Option<&Arc<Pipeline>> {
        self.inner.plan.pipelines.iter().find(|p| p.name() == name)
    }

    /// Answers an HTTP request that arrived on listener `key`.
    pub async fn serve_http(&self, key: &ListenerKey, request: HttpRequest) -> HttpResponse {
        self.inner
            .plan
            .router
            .serve(key, request, &self.inner.services)
            .await
    }

    /// The modules in start order, with their state and details.
    pub fn module_status(&self) -> Vec<ModuleStatus> {
        let started = self.inner.lifecycle.try_lock().map(|l| l.started).ok();
        let state = self.state();
        self.inner
            .plan
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| ModuleStatus {
                name: m.name.clone(),
                type_name: m.type_name.clone(),
                state: match started {
                    Some(n) if i < n => "started",
                    Some(_) => "stopped",
                    None if state == EngineState::Running => "started",
                    None => "changing",
                },
                details: m.module.status(),
            })
            .collect()
    }

    /// The names of the pipelines, in document order.
    pub fn pipeline_names(&self) -> Vec<&str> {
        self.inner.plan.pipelines.iter().map(|p| p.name()).collect()
    }

    /// The actual addresses of this engine's `http.server` modules, by module name.
    pub fn listening(&self) -> Vec<(String, String)> {
        self.module_status()
            .into_iter()
            .filter_map(|m| {
                let address = m.details.get("listening")?.as_str()?.to_owned();
                Some((m.name, address))
            })
            .collect()
    }
}

/// Routes a standalone engine's listeners to the engine itself.
struct OwnDispatch(Weak<EngineInner>);

impl HttpDispatch for OwnDispatch {
    fn dispatch(
        &self,
        listener: &ListenerKey,
        request: HttpRequest,
    ) -> BoxFuture<'static, HttpResponse> {
        let engine = self.0.upgrade().map(|inner| Engine { inner });
        let listener = listener.clone();
        Box::pin(async move {
            match engine {
                Some(engine) => engine.serve_http(&listener, request).await,
                None => json_response(
                    hyper::StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"error": "the engine has stopped"}),
                ),
            }
        })
    }
}
