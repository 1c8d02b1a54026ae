//! The runtime: the engine kept live by the swap protocol, behind one handle.
//!
//! [`Runtime::start`] spawns the actor tree (a Supervisor with its Active; Candidates come and
//! go per request) and activates the first config. From then on:
//!
//! - [`Runtime::execute`] and every HTTP request take a lease on the live engine from a
//!   lock-free slot; no actor sits on the request path;
//! - [`Runtime::reload`] sends the new config through the Supervisor's mailbox, so reloads never
//!   interleave, and returns one typed [`ReloadOutcome`];
//! - [`Runtime::try_activate`] builds a config and tears it down, touching nothing;
//! - [`Runtime::supervisor`] gives embedders the Supervisor's `ActorRef`, to send the same
//!   messages themselves with ractor's `call!`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::ActorRef;
use serde::Serialize;
use serde_json::Value;
use swapvisor_actors::{
    Backoff, BuildFailure, Origin, ReloadObserver, ReloadOutcome, ReloadRecord, ReloadRequest,
    RunState, Slot, Stage, Supervisor, SupervisorArgs, SupervisorMsg, SupervisorStatus,
};

use crate::config::{Config, DocumentLimits, PluginSpec, SharedEnv, process_env, resolve_plugin};
use crate::engine::plugin_swap_settings;
use crate::engine::{
    Engine, EngineContext, EngineSpec, ExecuteError, ModuleStatus, Services, TypesUsed,
    json_response,
};
use crate::net::{HttpDispatch, HttpRequest, HttpResponse, ListenerKey, ListenerPool};
use crate::plugin::{PluginHost, PluginInstance, PluginRef, PluginStatus, PluginUnitSpec};
use crate::registry::Registry;
use crate::try_activate::TryActivateResult;

/// The Supervisor's `ActorRef` for the engine slot; send it [`SupervisorMsg`]s with `call!`.
pub type EngineSupervisor = ActorRef<SupervisorMsg<Engine>>;

/// The runtime is not there to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The actor system could not be started.
    #[error("cannot start the runtime: {0}")]
    Spawn(String),
    /// The first config did not activate; nothing was left running.
    #[error("the initial config did not activate ({}): {}", .0.name(), .0.error().unwrap_or("no error"))]
    NotActivated(ReloadOutcome),
    /// The runtime has shut down.
    #[error("the runtime has shut down")]
    Stopped,
    /// No plugin instance has that name.
    #[error("no plugin named {0:?} is running")]
    UnknownPlugin(String),
}

/// Options for [`Runtime::start_with`]. `Default` gives the process environment, the default
/// document limits, 20 records of history and restore retries from 100 ms to 30 s.
pub struct RuntimeOptions {
    /// Where `${VAR}` values come from.
    pub env: SharedEnv,
    /// Limits on config documents.
    pub limits: DocumentLimits,
    /// How many reloads status keeps.
    pub history_limit: usize,
    /// Backoff between restore attempts while degraded.
    pub restore_backoff: Backoff,
    /// Told about every outcome (metrics).
    pub observer: Option<Arc<dyn ReloadObserver>>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            env: Arc::new(process_env),
            limits: DocumentLimits::default(),
            history_limit: 20,
            restore_backoff: Backoff::default(),
            observer: None,
        }
    }
}

/// A running swapvisor: the actor tree, the live engine and its listeners.
pub struct Runtime {
    supervisor: EngineSupervisor,
    slot: Arc<Slot<Engine>>,
    context: Arc<EngineContext>,
    supervisor_exit: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Routes every request on the runtime's listeners to whichever engine is live right now.
struct LiveEngineDispatch(Weak<Slot<Engine>>);

impl HttpDispatch for LiveEngineDispatch {
    fn dispatch(
        &self,
        listener: &ListenerKey,
        request: HttpRequest,
    ) -> BoxFuture<'static, HttpResponse> {
        let slot = self.0.upgrade();
        let listener = listener.clone();
        Box::pin(async move {
            let unavailable = |why: String| {
                json_response(
                    hyper::StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "error": format!("no engine is serving: {why}") }),
                )
            };
            let Some(slot) = slot else {
                return unavailable("the runtime has shut down".to_owned());
            };
            match slot.acquire().await {
                Ok(engine) => engine.serve_http(&listener, request).await,
                Err(error) => unavailable(error.to_string()),
            }
        })
    }
}

impl Runtime {
    /// Starts a runtime with the default options and activates `config` as generation 1.
    pub async fn start(config: Config, registry: Registry) -> Result<Runtime, RuntimeError> {
        Self::start_with(
            EngineSpec::from(config),
            registry,
            RuntimeOptions::default(),
        )
        .await
    }

    /// Starts a runtime and activates `spec` (a config, or YAML/JSON text) as generation 1.
    /// If it does not activate, everything is torn down and the outcome is returned.
    pub async fn start_with(
        spec: impl Into<EngineSpec>,
        registry: Registry,
        options: RuntimeOptions,
    ) -> Result<Runtime, RuntimeError> {
        let slot = Arc::new(Slot::default());
        let pool = ListenerPool::new(Arc::new(LiveEngineDispatch(Arc::downgrade(&slot))));
        let plugins = PluginHost::default();
        let context = Arc::new(EngineContext {
            registry: Arc::new(registry),
            services: Services::new(pool, plugins.clone()),
            limits: options.limits,
            env: options.env,
        });
        let mut args = SupervisorArgs::new("engine", context.clone(), slot.clone());
        args.history_limit = options.history_limit;
        args.restore_backoff = options.restore_backoff;
        args.observer = options.observer;
        let (supervisor, exit) = Supervisor::spawn_for(args)
            .await
            .map_err(|e| RuntimeError::Spawn(e.to_string()))?;
        // A plugin crash loop escalates to the engine's Supervisor (which reverts a config on
        // probation), and a per-plugin reload may not take away a type the live config uses.
        let escalate_to = supervisor.clone();
        plugins.set_escalation(move |reason| {
            let _ = escalate_to.send_message(SupervisorMsg::Escalate { reason });
        });
        let live = Arc::downgrade(&slot);
        plugins.set_type_guard(move |name, provided| {
            match live.upgrade().and_then(|slot| slot.current()) {
                Some(engine) => engine.check_plugin_types(name, provided),
                None => Ok(()),
            }
        });
        let runtime = Runtime {
            supervisor,
            slot,
            context,
            supervisor_exit: Mutex::new(Some(exit)),
        };
        let first = ReloadRequest::new(spec.into()).from(Origin::Initial);
        let record = runtime.reload_with(first).await?;
        if record.outcome.is_activated() {
            Ok(runtime)
        } else {
            runtime.shutdown().await?;
            Err(RuntimeError::NotActivated(record.outcome))
        }
    }

    /// Reloads to `config`. Returns once it has an outcome.
    pub async fn reload(&self, config: Config) -> Result<ReloadOutcome, RuntimeError> {
        Ok(self
            .reload_with(ReloadRequest::new(EngineSpec::from(config)))
            .await?
            .outcome)
    }

    /// Reloads to `config` only if `generation` is still current; otherwise answers
    /// [`ReloadOutcome::Conflict`] and changes nothing.
    pub async fn reload_expecting(
        &self,
        config: Config,
        generation: u64,
    ) -> Result<ReloadOutcome, RuntimeError> {
        let request = ReloadRequest::new(EngineSpec::from(config)).expecting(generation);
        Ok(self.reload_with(request).await?.outcome)
    }

    /// Sends any reload request (source text, origin, expected generation) and returns its
    /// full record.
    pub async fn reload_with(
        &self,
        request: ReloadRequest<EngineSpec>,
    ) -> Result<ReloadRecord, RuntimeError> {
        ractor::call!(self.supervisor, SupervisorMsg::Reload, request)
            .map_err(|_| RuntimeError::Stopped)
    }

    /// Builds `config` without starting it, and tears the candidate down. The live engine,
    /// the generation and the status are untouched, and no port is bound.
    pub async fn try_activate(&self, config: Config) -> Result<TryActivateResult, RuntimeError> {
        self.try_activate_spec(EngineSpec::from(config)).await
    }

    /// Like [`Runtime::try_activate`], for a config given as a spec (or YAML/JSON text).
    pub async fn try_activate_spec(
        &self,
        spec: impl Into<EngineSpec>,
    ) -> Result<TryActivateResult, RuntimeError> {
        Ok(match self.probe(spec).await? {
            Ok(types) => TryActivateResult::BuildOk { types },
            Err(failure) => TryActivateResult::BuildFailed {
                error: failure.message,
            },
        })
    }

    /// Builds a spec and tears it down, like try-activate, keeping the stage of a failure.
    pub async fn probe(
        &self,
        spec: impl Into<EngineSpec>,
    ) -> Result<Result<TypesUsed, BuildFailure>, RuntimeError> {
        ractor::call!(
            self.supervisor,
            SupervisorMsg::TryActivate,
            Arc::new(spec.into())
        )
        .map_err(|_| RuntimeError::Stopped)
    }

    /// Runs `pipeline` on the live engine with `input` as `request`. During a stop-first swap
    /// the call waits at the gate instead of failing.
    pub async fn execute(&self, pipeline: &str, input: Value) -> Result<Value, ExecuteError> {
        let engine = self
            .slot
            .acquire()
            .await
            .map_err(|e| ExecuteError::Unavailable(e.to_string()))?;
        engine.execute(pipeline, input).await
    }

    /// The runtime's state, generation, config hash, reload history and modules.
    pub async fn status(&self) -> Result<RuntimeStatus, RuntimeError> {
        let supervisor: SupervisorStatus = ractor::call!(self.supervisor, SupervisorMsg::Status)
            .map_err(|_| RuntimeError::Stopped)?;
        let live = self.slot.current();
        Ok(RuntimeStatus {
            state: supervisor.state,
            generation: supervisor.generation,
            config_hash: supervisor.fingerprint,
            mode: live
                .as_ref()
                .map(|e| e.resolved().settings.reload.mode.as_str()),
            last_reload: supervisor.last_reload,
            history: supervisor.history,
            modules: live.as_ref().map(|e| e.module_status()).unwrap_or_default(),
            plugins: self.context.services.plugins().status(),
            running_engines: self.context.services.census().running(),
            listeners: self.listeners().addresses().len(),
            escalations: supervisor.escalations,
            last_escalation: supervisor.last_escalation,
            in_flight: self.slot.current_in_flight(),
            queued_reloads: supervisor.queued,
            child_actors: supervisor.child_actors,
            restore_attempts: supervisor.restore_attempts,
        })
    }

    /// Reloads the plugin instance `name` alone to `spec` (one `plugins:` entry), through its
    /// slot's swap protocol: the new instance is built, started, and given the old one's state;
    /// calls queued or in flight meanwhile are each served once. A start failure leaves the old
    /// instance serving, state intact (`RolledBack`); a spec that would take away a type the
    /// live config uses is `Rejected`.
    pub async fn reload_plugin(
        &self,
        name: &str,
        spec: PluginSpec,
    ) -> Result<ReloadOutcome, RuntimeError> {
        Ok(self
            .reload_plugin_with(name, spec, Origin::Api)
            .await?
            .outcome)
    }

    /// Like [`Runtime::reload_plugin`], with the origin given and the full record returned.
    pub async fn reload_plugin_with(
        &self,
        name: &str,
        spec: PluginSpec,
        origin: Origin,
    ) -> Result<ReloadRecord, RuntimeError> {
        let plugins = self.context.services.plugins();
        if !plugins.contains(name) {
            return Err(RuntimeError::UnknownPlugin(name.to_owned()));
        }
        let rejected = |error: String| {
            ReloadRecord::new(
                0,
                origin,
                ReloadOutcome::Rejected {
                    stage: Stage::Validate,
                    error,
                },
                0,
            )
        };
        if spec.name != name {
            return Ok(rejected(format!(
                "the spec names plugin {:?}, not {name:?}",
                spec.name
            )));
        }
        let (spec, restart) = match resolve_plugin(&spec, &*self.context.env) {
            Ok(resolved) => resolved,
            Err(errors) => return Ok(rejected(errors.to_string())),
        };
        let swap = match self.slot.current() {
            Some(engine) => plugin_swap_settings(&engine.resolved().settings.reload),
            None => plugin_swap_settings(&crate::config::RuntimeSettings::default().reload),
        };
        let unit = PluginUnitSpec {
            spec,
            restart,
            swap,
            guard_types: true,
        };
        plugins
            .reload(name, unit, origin)
            .await
            .ok_or(RuntimeError::UnknownPlugin(name.to_owned()))
    }

    /// The status of the plugin instance `name`.
    pub fn plugin_status(&self, name: &str) -> Option<PluginStatus> {
        self.context
            .services
            .plugins()
            .status()
            .into_iter()
            .find(|p| p.name == name)
    }

    /// A stable reference to the plugin instance `name`.
    pub fn plugin(&self, name: &str) -> Option<PluginRef> {
        self.context.services.plugins().get(name)
    }

    /// The swap Supervisor of plugin `name`: `SupervisorMsg::Reload` sent to it (with a
    /// [`PluginUnitSpec`]) is the ReloadPlugin message.
    /// It stays awake from then on (idle plugin slots otherwise hibernate their Supervisor).
    pub async fn plugin_supervisor(
        &self,
        name: &str,
    ) -> Option<ActorRef<SupervisorMsg<PluginInstance>>> {
        self.context.services.plugins().supervisor_of(name).await
    }

    /// The live engine, if one is serving (for inspection; requests should use `execute`).
    pub fn live_engine(&self) -> Option<Arc<Engine>> {
        self.slot.current()
    }

    /// The Supervisor actor, for embedders who send [`SupervisorMsg`]s themselves.
    pub fn supervisor(&self) -> EngineSupervisor {
        self.supervisor.clone()
    }

    /// The runtime's listener pool (the bound addresses, for status and tests).
    pub fn listeners(&self) -> &ListenerPool {
        self.context.services.listeners()
    }

    /// The registry configs are checked against.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.context.registry
    }

    /// Stops gracefully: queued reloads are answered `Superseded`, the live engine drains and
    /// stops (modules in reverse order), and every actor exits. Returns when all is stopped.
    pub async fn shutdown(&self) -> Result<(), RuntimeError> {
        let asked = ractor::call!(self.supervisor, SupervisorMsg::Shutdown);
        let exit = self
            .supervisor_exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(exit) = exit {
            let _ = exit.await;
        }
        // Whatever no engine holds any more closes now (normally nothing is left), then the
        // plugin restart supervisor exits.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        self.context.services.plugins().shutdown(deadline).await;
        self.listeners().close_all(deadline).await;
        asked.map_err(|_| RuntimeError::Stopped)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Not shut down explicitly: ask for a graceful shutdown in the background.
        if self
            .supervisor_exit
            .get_mut()
            .map(|e| e.is_some())
            .unwrap_or(false)
        {
            let (reply, _ignored) = ractor::concurrency::oneshot();
            let _ = self
                .supervisor
                .send_message(SupervisorMsg::Shutdown(reply.into()));
        }
    }
}

/// The runtime as shown in status (and by the admin API).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    /// `starting`, `running`, `reloading`, `degraded` or `stopping`.
    pub state: RunState,
    /// How many reloads have activated.
    pub generation: u64,
    /// The live config's hash.
    pub config_hash: Option<String>,
    /// The live config's swap mode.
    pub mode: Option<&'static str>,
    /// The most recent reload, with its outcome, error, generation and stage durations.
    pub last_reload: Option<ReloadRecord>,
    /// Recent reloads, oldest first.
    pub history: Vec<ReloadRecord>,
    /// The live engine's modules.
    pub modules: Vec<ModuleStatus>,
    /// Requests running on the live engine now.
    pub in_flight: usize,
    /// Reloads waiting for their turn.
    pub queued_reloads: usize,
    /// Actors under the Supervisor now (the Active, plus Candidates still building).
    pub child_actors: usize,
    /// Failed restore attempts since the runtime became degraded.
    pub restore_attempts: u32,
    /// The plugin instances, in start order.
    pub plugins: Vec<PluginStatus>,
    /// Engines running now: 1, or 2 while a replaced engine drains.
    pub running_engines: usize,
    /// Bound listening sockets.
    pub listeners: usize,
    /// Crash loops escalated from plugins.
    pub escalations: u32,
    /// The most recent escalation.
    pub last_escalation: Option<String>,
}
