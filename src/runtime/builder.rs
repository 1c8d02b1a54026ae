//! [`RuntimeBuilder`]: a runtime with options.

use std::sync::{Arc, Mutex};

use swapvisor_actors::{
    Backoff, Origin, ReloadObserver, Slot, Supervisor, SupervisorArgs, SupervisorMsg,
};

use super::configs::ConfigHistory;
use super::dispatch::LiveEngineDispatch;
use super::last_good::SaveLastGood;
use super::{Reload, Runtime, RuntimeError};
use crate::config::{DocumentLimits, SharedEnv, process_env};
use crate::engine::{EngineContext, EngineSpec};
use crate::net::ListenerPool;
use crate::plugin::PluginHost;
use crate::registry::Registry;
use crate::state::StateDir;

/// Options for a runtime, then [`RuntimeBuilder::start`]. Made by [`Runtime::builder`]; what
/// is not set keeps its default: the process environment, the default [`DocumentLimits`],
/// and the Supervisor's defaults for history (20 records) and restores (100 ms doubling to
/// 30 s).
///
/// ```
/// use std::sync::Arc;
/// use swapvisor::{Registry, Runtime};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let env = |name: &str| (name == "GREETING").then(|| "hi".to_owned());
/// let runtime = Runtime::builder(Registry::with_builtins())
///     .env(Arc::new(env))
///     .history(5)
///     .start("pipelines: { p: { steps: [{ name: s, type: step.set, config: { values: { word: '${GREETING}' } } }] } }")
///     .await
///     .unwrap();
/// let output = runtime.execute("p", serde_json::json!({})).await.unwrap();
/// assert_eq!(output, serde_json::json!({"word": "hi"}));
/// runtime.shutdown().await.unwrap();
/// # });
/// ```
pub struct RuntimeBuilder {
    registry: Registry,
    env: SharedEnv,
    limits: DocumentLimits,
    history: Option<usize>,
    restore_backoff: Option<Backoff>,
    observer: Option<Arc<dyn ReloadObserver>>,
    state: Option<StateDir>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment and the observer are closures and trait objects: named, not shown.
        f.debug_struct("RuntimeBuilder")
            .field("registry", &self.registry)
            .field("limits", &self.limits)
            .field("history", &self.history)
            .field("restore_backoff", &self.restore_backoff)
            .field("observer", &self.observer.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    pub(super) fn new(registry: Registry) -> Self {
        Self {
            registry,
            env: Arc::new(process_env),
            limits: DocumentLimits::default(),
            history: None,
            restore_backoff: None,
            observer: None,
            state: None,
        }
    }

    /// Where `${VAR}` values come from.
    pub fn env(mut self, env: SharedEnv) -> Self {
        self.env = env;
        self
    }

    /// Limits on config documents (size, nesting, aliases).
    pub fn limits(mut self, limits: DocumentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How many reloads status keeps.
    pub fn history(mut self, records: usize) -> Self {
        self.history = Some(records);
        self
    }

    /// The backoff between restore attempts while degraded.
    pub fn restore_backoff(mut self, backoff: Backoff) -> Self {
        self.restore_backoff = Some(backoff);
        self
    }

    /// Tells `observer` about every reload outcome (metrics, for example).
    pub fn observer(mut self, observer: Arc<dyn ReloadObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Keeps the runtime's state in `dir`: every config that activates is saved there
    /// ([`LastGood`](crate::state::LastGood)) before its reload is answered, and plugin
    /// instances keep their checkpoints there.
    pub fn state_dir(mut self, dir: StateDir) -> Self {
        self.state = Some(dir);
        self
    }

    /// Starts the runtime and activates `config` (a [`Config`](crate::Config), or YAML/JSON
    /// text) as generation 1. If it does not activate, everything is torn down and the
    /// outcome is returned.
    pub async fn start(self, config: impl Into<EngineSpec>) -> Result<Runtime, RuntimeError> {
        let slot = Arc::new(Slot::default());
        let listeners = ListenerPool::new(Arc::new(LiveEngineDispatch::new(&slot)));
        let plugins = PluginHost::new(self.env.clone());
        if let Some(dir) = &self.state {
            plugins.set_state_dir(dir.clone());
        }
        let context = Arc::new(EngineContext::new(
            Arc::new(self.registry),
            self.limits,
            self.env,
            listeners,
            plugins.clone(),
        ));
        let mut args = SupervisorArgs::new("engine", context.clone(), slot.clone());
        args.history_limit = self.history.unwrap_or(args.history_limit);
        args.restore_backoff = self.restore_backoff.unwrap_or(args.restore_backoff);
        let then = match self.state {
            Some(dir) => Some(Arc::new(SaveLastGood::new(dir, &slot, self.observer)) as _),
            None => self.observer,
        };
        let configs = Arc::new(ConfigHistory::new(&slot, then));
        args.observer = Some(configs.clone());
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
            configs,
            supervisor_exit: Mutex::new(Some(exit)),
        };
        let first = Reload::new(config).from(Origin::Initial);
        let record = runtime.reload(first).await?;
        if record.outcome.is_activated() {
            Ok(runtime)
        } else {
            runtime.shutdown().await?;
            Err(RuntimeError::NotActivated(record.outcome))
        }
    }
}
