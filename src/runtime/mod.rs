//! The runtime: the engine kept live by the swap protocol, behind one handle.
//!
//! [`Runtime::start`] spawns the actor tree (a Supervisor with its Active; Candidates come and
//! go per request) and activates the first config. From then on:
//!
//! - [`Runtime::reload`] sends a new config through the Supervisor's mailbox, so reloads never
//!   interleave, and answers with the record of its one typed outcome;
//! - [`Runtime::try_activate`] builds a config and tears it down, touching nothing;
//! - [`Runtime::execute`] and every HTTP request take a lease on the live engine from a
//!   lock-free slot; no actor sits on the request path;
//! - [`Runtime::status`] asks the Supervisor for the whole picture; [`Runtime::observe`] reads
//!   what is cheap (live config, retirements, request counts) without asking anyone;
//! - [`Runtime::plugin`] addresses one plugin instance: call it, reload it alone, read its
//!   status;
//! - [`Runtime::supervisor`] gives actor systems the Supervisor's `ActorRef`, to send the same
//!   messages themselves with ractor's `call!`.
//!
//! The fleet's two-phase reload (prepare, then commit or abort) is `swapvisor::fleet::TwoPhase`,
//! behind the `fleet` feature: it is how a node takes part in a fleet reload, not how one
//! runtime is used.

mod builder;
mod configs;
mod dispatch;
// What the binary's upgrade takes from a runtime.
#[cfg(feature = "cli")]
mod handover;
mod last_good;
mod observe;
mod status;
mod try_activate;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorRef;
use serde_json::Value;
use swapvisor_actors::{ReloadOutcome, ReloadRecord, ReloadRequest, Slot, SupervisorMsg};

pub use builder::RuntimeBuilder;
pub use observe::Observer;
pub use status::RuntimeStatus;
pub use try_activate::TryActivateResult;

use crate::config::Config;
use crate::engine::{Engine, EngineContext, EngineSpec};
use crate::extension::ExecuteError;
use crate::plugin::PluginRef;
use crate::registry::Registry;

/// A reload of the engine: a config (or YAML/JSON text), and optionally the generation it
/// expects to replace and who asks. A [`Config`] or an [`EngineSpec`] converts into one.
pub type Reload = ReloadRequest<EngineSpec>;

impl From<Config> for Reload {
    fn from(config: Config) -> Self {
        Reload::new(config)
    }
}

impl From<EngineSpec> for Reload {
    fn from(spec: EngineSpec) -> Self {
        Reload::new(spec)
    }
}

/// The runtime is not there to answer, or has no such plugin.
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

/// A running swapvisor: the actor tree, the live engine, its listeners and its plugins.
pub struct Runtime {
    supervisor: ActorRef<SupervisorMsg<Engine>>,
    slot: Arc<Slot<Engine>>,
    context: Arc<EngineContext>,
    /// The live config and the previous one.
    configs: Arc<configs::ConfigHistory>,
    supervisor_exit: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Runtime {
    /// Starts a runtime with the default options and activates `config` (a [`Config`], or
    /// YAML/JSON text) as generation 1. If it does not activate, everything is torn down and
    /// the outcome is returned. [`Runtime::builder`] sets the options.
    pub async fn start(
        config: impl Into<EngineSpec>,
        registry: Registry,
    ) -> Result<Runtime, RuntimeError> {
        Self::builder(registry).start(config).await
    }

    /// A runtime with options: the environment, document limits, history length, restore
    /// backoff and an outcome observer.
    pub fn builder(registry: Registry) -> RuntimeBuilder {
        RuntimeBuilder::new(registry)
    }

    /// Reloads the engine: a [`Config`], or a [`Reload`] that also says which generation it
    /// expects to replace (compare-and-swap) or who asks. Answers once the request has its
    /// outcome, with the record of it: [`ReloadOutcome::Activated`], or the reason the old
    /// engine still serves.
    pub async fn reload(&self, request: impl Into<Reload>) -> Result<ReloadRecord, RuntimeError> {
        ractor::call!(self.supervisor, SupervisorMsg::Reload, request.into())
            .map_err(|_| RuntimeError::Stopped)
    }

    /// Builds `config` without starting it, and tears the candidate down. The live engine,
    /// the generation and the status are untouched, and no port is bound.
    pub async fn try_activate(
        &self,
        config: impl Into<EngineSpec>,
    ) -> Result<TryActivateResult, RuntimeError> {
        let spec = Arc::new(config.into());
        let verdict = ractor::call!(self.supervisor, SupervisorMsg::TryActivate, spec)
            .map_err(|_| RuntimeError::Stopped)?;
        Ok(TryActivateResult::from(verdict))
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

    /// The runtime's state, generation, config hash, reload history, modules and plugins.
    pub async fn status(&self) -> Result<RuntimeStatus, RuntimeError> {
        let supervisor = ractor::call!(self.supervisor, SupervisorMsg::Status)
            .map_err(|_| RuntimeError::Stopped)?;
        Ok(RuntimeStatus::new(supervisor, &self.slot, &self.context))
    }

    /// The cheap getters (the live config, retirements, request counts), read without asking
    /// the Supervisor: what a metrics scrape or a poll reads.
    pub fn observe(&self) -> Observer<'_> {
        Observer::new(&self.slot, &self.context, &self.configs)
    }

    /// Every metric of this runtime, for the admin API's `/metrics`.
    #[cfg(feature = "admin")]
    pub(crate) fn metrics_registry(&self) -> &crate::metrics::MetricsRegistry {
        self.context.metrics()
    }

    /// A stable reference to the plugin instance `name`: call it, reload it alone
    /// ([`PluginRef::reload`]), or read its status.
    pub fn plugin(&self, name: &str) -> Result<PluginRef, RuntimeError> {
        self.context
            .plugins()
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownPlugin(name.to_owned()))
    }

    /// The Supervisor actor, for actor systems that send [`SupervisorMsg`]s themselves.
    pub fn supervisor(&self) -> ActorRef<SupervisorMsg<Engine>> {
        self.supervisor.clone()
    }

    /// Stops gracefully: queued reloads are answered `Superseded`, the live engine drains and
    /// stops (modules in reverse order), the plugins stop, and every actor exits. Returns when
    /// all is stopped.
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
        // plugin restarter exits.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        self.context.plugins().shutdown(deadline).await;
        self.context.listeners().close_all(deadline).await;
        asked.map_err(|_| RuntimeError::Stopped)
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("supervisor", &self.supervisor)
            .field("generation", &self.slot.generation())
            .finish_non_exhaustive()
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
