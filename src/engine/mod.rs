//! The engine: one config, built into modules and pipelines, started and stopped as a whole.
//!
//! An engine's life has three steps, and only the last two touch the outside world:
//!
//! 1. [`Engine::build`] checks the config against the [`Registry`] and constructs every
//!    module, step and trigger (`plan`). It binds no port and spawns no task, so building is
//!    safe to do while another engine serves: that is what try-activate and reload rely on.
//! 2. [`Engine::start`] attaches the plugins the config declares, starts modules in dependency
//!    order, then the trigger tasks. If module *k* fails, the *k − 1* already started are
//!    stopped again, in reverse order, and the error names module *k* (`lifecycle`).
//! 3. [`Engine::stop`] stops the trigger tasks, then the modules in reverse order, each given
//!    until the deadline.
//!
//! Between start and stop, [`Engine::execute`] runs a pipeline, and HTTP requests arriving on
//! the engine's listeners run the pipelines routed to them. In a runtime the engine is a
//! [`Unit`](swapvisor_actors::Unit) of the swap protocol (`unit`).
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

mod amplification;
mod branching;
mod carry;
mod context;
mod diff;
mod error;
mod flow;
mod http;
mod lifecycle;
mod pipeline;
mod plan;
mod plugins;
mod requests;
mod status;
mod types;
mod unit;

use std::sync::Arc;

use serde_json::Value;
use swapvisor_actors::{Changes, guard};

pub(crate) use branching::SWITCH;
pub use error::{BuildError, StartError, StopError};
pub use http::MAX_BODY_BYTES;
pub(crate) use http::{body_value, json_response};
pub use pipeline::Execution;
pub use requests::{RequestMetrics, RequestStats};
pub(crate) use status::listening;
pub use status::{EngineState, ModuleStatus};
pub use types::{EngineTypes, TypeLists};
pub use unit::EngineSpec;

pub(crate) use context::EngineContext;

use crate::config::{Config, ConfigErrors, DocumentLimits, EnvLookup, Resolved, process_env};
use crate::extension::ExecuteError;
use crate::net::{HttpRequest, HttpResponse, ListenerKey};
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
    /// What this engine changes against the engine that last started in its context.
    changes: Changes,
    context: Arc<EngineContext>,
    lifecycle: tokio::sync::Mutex<lifecycle::Lifecycle>,
    state: std::sync::Mutex<EngineState>,
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
    /// Builds an engine for use on its own, with the process environment and listeners and
    /// plugins of its own. No outside effects.
    pub async fn build(config: &Config, registry: &Registry) -> Result<Engine, BuildError> {
        Self::build_with(Arc::new(config.clone()), registry, &process_env).await
    }

    /// Like [`Engine::build`], with `${VAR}` values looked up in `env`.
    pub async fn build_with(
        config: Arc<Config>,
        registry: &Registry,
        env: EnvLookup<'_>,
    ) -> Result<Engine, BuildError> {
        let context = Arc::new(EngineContext::standalone(registry));
        Self::build_in(&EngineSpec::Config(config), &context, env).await
    }

    /// Parses `source` (YAML or JSON) within `limits` and builds it on its own, reporting every
    /// problem of the document and of the build together. No outside effects.
    pub async fn build_from_source(
        source: &[u8],
        limits: &DocumentLimits,
        registry: &Registry,
        env: EnvLookup<'_>,
    ) -> Result<Engine, BuildError> {
        let context = Arc::new(EngineContext::standalone(registry).with_limits(*limits));
        Self::build_in(&EngineSpec::Source(source.into()), &context, env).await
    }

    /// Builds `spec` in `context`: parsing it first when it is source text. No outside
    /// effects.
    pub(crate) async fn build_in(
        spec: &EngineSpec,
        context: &Arc<EngineContext>,
        env: EnvLookup<'_>,
    ) -> Result<Engine, BuildError> {
        // Parsing and planning are CPU work proportional to the config: off the threads that
        // serve requests, so no config of any shape delays one.
        let (config, plan) = off_request_threads(|| {
            let (config, errors) = match spec {
                EngineSpec::Config(config) => (config.clone(), ConfigErrors::default()),
                EngineSpec::Source(source) => {
                    let (config, errors) = Config::parse_collecting(source, context.limits())?;
                    (Arc::new(config), errors)
                }
            };
            let plan = plan::plan(
                &config,
                context.registry(),
                context.requests(),
                context.modules(),
                env,
                errors,
            )?;
            Ok::<_, BuildError>((config, plan))
        })?;
        // A carried module was prepared when it was built for an earlier engine.
        for module in plan.modules.iter().filter(|m| !m.carried) {
            let module = &module.shared;
            let message = match guard::run(None, || module.module.prepare()).await {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.0,
                Err(interrupted) => interrupted.to_string(),
            };
            return Err(BuildError::Module {
                module: module.spec.name.clone(),
                message,
            });
        }
        let changes = diff::changes(&plan, context.live_engine().as_deref());
        let inner = Arc::new(EngineInner {
            hash: config.hash(),
            config,
            plan,
            changes,
            context: context.clone(),
            lifecycle: tokio::sync::Mutex::default(),
            state: std::sync::Mutex::new(EngineState::Built),
        });
        context.serve_if_standalone(&inner);
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
    pub fn types_used(&self) -> &TypeLists {
        &self.inner.plan.types
    }

    /// The types this engine registers (what a config could use) and the types it uses.
    pub fn types(&self) -> EngineTypes {
        EngineTypes {
            registered: TypeLists::registered(&self.inner.plan.registry),
            used_types: self.types_used().clone(),
            changes: None,
        }
    }

    /// What this engine changes against the engine that last started in the same context (in a
    /// runtime, the live one when this one was built): the modules and pipelines added,
    /// changed, removed and kept. Kept modules are carried over: not rebuilt, not restarted.
    pub fn changes(&self) -> &Changes {
        &self.inner.changes
    }

    /// The names of the pipelines, in document order.
    pub fn pipeline_names(&self) -> Vec<&str> {
        self.inner.plan.pipelines.iter().map(|p| p.name()).collect()
    }

    /// Runs the pipeline `name` with `input` as `request`, and returns the last step's output.
    pub async fn execute(&self, name: &str, input: Value) -> Result<Value, ExecuteError> {
        self.run(name, &input).await.map(Execution::output)
    }

    /// Runs the pipeline `name` and returns every step's output.
    pub async fn run(&self, name: &str, input: &Value) -> Result<Execution, ExecuteError> {
        let plan = &self.inner.plan;
        let Some(pipeline) = plan.pipelines.iter().find(|p| p.name() == name) else {
            return Err(ExecuteError::UnknownPipeline {
                name: name.to_owned(),
                available: self.pipeline_names().join(", "),
            });
        };
        pipeline
            .run(input, self.inner.context.services(), None)
            .await
    }

    /// Answers an HTTP request that arrived on listener `key`.
    pub(crate) async fn serve_http(&self, key: &ListenerKey, request: HttpRequest) -> HttpResponse {
        let services = self.inner.context.services();
        self.inner.plan.router.serve(key, request, services).await
    }
}

/// Runs `work`, which blocks, with this worker's other tasks moved to another thread first, on
/// a multi-threaded runtime; inline elsewhere (a current-thread runtime has no other thread).
pub(crate) fn off_request_threads<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
