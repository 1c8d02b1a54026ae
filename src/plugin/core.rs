//! The core of a plugin instance: its actor's phase, and the moves between phases.
//!
//! A [`PluginInstance`](super::PluginInstance) owns, at any moment, at most one running actor
//! for its plugin. The phase says which, and every move that must not overwrite a concurrent
//! one (a stop during a restart, a restart of an instance that was swapped out) is a
//! compare-and-set ([`InstanceCore::transition`]):
//!
//! ```text
//!   Idle ──start──▶ Starting ──spawned──▶ Running(actor) ──crash──▶ Restarting ──▶ Starting ...
//!                      │                      │                        │
//!                      └──────── stop ────────┴──────── stop ──────────┴──▶ Stopped
//!   Restarting ──beyond intensity, or not restarted by policy──▶ Failed
//! ```
//!
//! The restarter and the plugin's actor refer to the core, not to the instance, so that a crash
//! restart replaces the actor inside the same instance: the slot does not change.

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::ActorRef;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::checkpoint::Identity;
use super::checkpoints::CheckpointStore;
use super::messages::PluginMsg;
use super::spec::PluginUnitSpec;
use crate::extension::plugin::{DirectCall, Plugin, PluginCall, PluginError};
use crate::registry::Registry;

/// Where an instance's actor is.
#[derive(Clone)]
pub(crate) enum Phase {
    /// Built, not started.
    Idle,
    /// Serving calls.
    Running(Serving),
    /// Crashed; a restart is scheduled.
    Restarting,
    /// Its actor is being spawned (a start or a restart). A stop meanwhile turns this into
    /// `Stopped`, and the spawner then stops the actor it made instead of publishing it.
    Starting,
    /// Crashed beyond its restart intensity, or exited for good.
    Failed(String),
    /// Stopped on purpose.
    Stopped,
}

/// A running instance: its actor, and the way around it for plugins that answer calls
/// themselves ([`Plugin::direct_calls`]).
#[derive(Clone)]
pub(crate) struct Serving {
    pub(crate) actor: ActorRef<PluginMsg>,
    pub(crate) direct: Option<DirectCall>,
    pub(crate) pid: Option<u32>,
    /// The version the started plugin reports, when it differs from the built one's.
    pub(crate) version: Option<Arc<str>>,
}

/// A plugin slot's latest error: what, when, and whether an instance has served since.
#[derive(Debug, Clone)]
pub(crate) struct LastError {
    pub(crate) message: String,
    pub(crate) at: std::time::SystemTime,
    /// An instance started and served after it: the error is history, not the present.
    pub(crate) past: bool,
}

/// How often a plugin slot's instances were restarted after a crash, and the latest error.
/// Shared by all the instances of one slot, so that a reload does not reset it.
#[derive(Debug, Default)]
pub(crate) struct CrashRecord {
    pub(crate) restarts: AtomicU32,
    pub(crate) last_error: Mutex<Option<LastError>>,
    /// Crash loops past the restart intensity, whoever took them (the slot's Supervisor on
    /// probation, or the engine's), and the latest one's reason.
    pub(crate) escalations: AtomicU32,
    pub(crate) last_escalation: Mutex<Option<String>>,
}

impl CrashRecord {
    /// The latest error, locked. Plain data replaced whole: a poisoned lock still holds it.
    pub(crate) fn last_error_mut(&self) -> std::sync::MutexGuard<'_, Option<LastError>> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the core of an instance needs of the slot the instance belongs to. The slot's own
/// types (its swap Supervisor, the published `Slot<PluginInstance>`) are defined above the
/// core, so the core sees them through this, implemented by the instance's context.
pub(crate) trait InstanceSlot: Send + Sync {
    /// The registry to build the plugin again from (a restart, a restore).
    fn registry(&self) -> &Registry;
    /// How often the slot's instances were restarted, and the latest error.
    fn record(&self) -> &CrashRecord;
    /// True while the slot publishes the instance whose core is `core`.
    fn publishes(&self, core: &Arc<InstanceCore>) -> bool;
    /// True while the slot publishes an instance other than the one whose core is `core`.
    fn publishes_other(&self, core: &Arc<InstanceCore>) -> bool;
    /// The slot's checkpoints, shared by its instances.
    fn checkpoints(&self) -> &Arc<CheckpointStore>;
    /// What the slot keeps of the code its instances ran.
    fn code(&self) -> &Arc<crate::extension::plugin::CodeHold>;
    /// Passes a crash loop to the slot's own Supervisor; true when a probation window there
    /// takes it.
    fn escalate(&self, reason: String) -> BoxFuture<'_, bool>;
    /// Where the slot's instances register their metrics (the runtime's store), if anywhere.
    fn metrics(&self) -> Option<&Arc<crate::metrics::ExtensionStore>>;
}

/// The shared part of a plugin instance: what its actor and the restarter refer to.
pub(crate) struct InstanceCore {
    /// The spec it was built from, with the code it runs pinned.
    pub(super) spec: Arc<PluginUnitSpec>,
    pub(super) version: String,
    /// The file whose changes reload it, if its config asks for that.
    pub(super) watched: Option<std::path::PathBuf>,
    /// The plugin built at build time, taken by the first start.
    pub(super) prototype: Mutex<Option<Box<dyn Plugin>>>,
    phase: watch::Sender<Phase>,
    /// What every instance of the slot shares: the registry, the crash record, and the slot
    /// itself (to tell whether this instance is still the live one).
    context: Arc<dyn InstanceSlot>,
}

impl InstanceCore {
    pub(super) fn new(
        spec: Arc<PluginUnitSpec>,
        plugin: Box<dyn Plugin>,
        context: Arc<dyn InstanceSlot>,
    ) -> Self {
        // Pinned, so that restarts and reverts run this very code, whatever is installed then.
        let spec = match plugin.code() {
            Some(code) if spec.code.as_deref() != Some(code) => Arc::new(PluginUnitSpec {
                code: Some(code.to_owned()),
                ..(*spec).clone()
            }),
            _ => spec,
        };
        Self {
            version: plugin.version().to_owned(),
            watched: plugin.watched_file().map(ToOwned::to_owned),
            prototype: Mutex::new(Some(plugin)),
            phase: watch::channel(Phase::Idle).0,
            context,
            spec,
        }
    }

    /// The registry to build the plugin again from (a restart, a restore).
    pub(super) fn registry(&self) -> &Registry {
        self.context.registry()
    }

    /// The slot's checkpoints.
    pub(crate) fn checkpoints(&self) -> &Arc<CheckpointStore> {
        self.context.checkpoints()
    }

    /// What the slot keeps of its instances' code, for the next instance's context.
    pub(super) fn code_hold(&self) -> Arc<crate::extension::plugin::CodeHold> {
        self.context.code().clone()
    }

    /// True once another instance has replaced this one: its checkpoints are stale then.
    /// (While nothing is published, during a swap's drain, the drained instance still counts.)
    pub(crate) fn superseded(self: &Arc<Self>) -> bool {
        self.context.publishes_other(self)
    }

    /// Who this instance's checkpoints say took them, given the version its code reports.
    pub(crate) fn identity(&self, version: &str) -> Identity {
        Identity {
            kind: self.spec.spec.kind.clone(),
            version: version.to_owned(),
            code: self.spec.code.clone(),
        }
    }

    /// Where this instance's actor registers its metrics, if anywhere.
    pub(super) fn slot_metrics(&self) -> Option<&Arc<crate::metrics::ExtensionStore>> {
        self.context.metrics()
    }

    /// How often the slot's instances were restarted, and the latest error.
    pub(super) fn record(&self) -> &CrashRecord {
        self.context.record()
    }

    /// `kind@version`, as fingerprints and logs name the code that runs.
    pub(super) fn kind_version(&self) -> String {
        format!("{}@{}", self.spec.spec.kind, self.version)
    }

    /// The instance's name.
    pub(crate) fn name(&self) -> &str {
        self.spec.name()
    }

    /// The spec this instance was built from.
    pub(crate) fn unit_spec(&self) -> &Arc<PluginUnitSpec> {
        &self.spec
    }

    /// The phase now.
    pub(crate) fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// True while its slot publishes this very instance: one swapped out is finished with.
    pub(crate) fn is_current(self: &Arc<Self>) -> bool {
        self.context.publishes(self)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Moves the phase to `to` if it satisfies `from`; true when it did. Every change that must
    /// not overwrite a concurrent one (a stop during a restart) goes through here.
    pub(crate) fn transition(&self, from: impl Fn(&Phase) -> bool, to: Phase) -> bool {
        self.phase.send_if_modified(|phase| {
            let allowed = from(phase);
            if allowed {
                *phase = to;
            }
            allowed
        })
    }

    /// Passes a crash loop to the slot's own Supervisor, counted in the slot's record whoever
    /// takes it; true when a probation window there takes it (a per-plugin reload is
    /// reverted).
    pub(crate) async fn escalate_to_slot(&self, reason: String) -> bool {
        let record = self.record();
        record
            .escalations
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *record
            .last_escalation
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        self.context.escalate(reason).await
    }

    pub(crate) fn record_error(&self, error: &str) {
        *self.record().last_error_mut() = Some(LastError {
            message: error.to_owned(),
            at: std::time::SystemTime::now(),
            past: false,
        });
    }

    /// An instance of the slot serves: its latest error, if any, is past.
    pub(crate) fn serving_again(&self) {
        if let Some(error) = self.record().last_error_mut().as_mut() {
            error.past = true;
        }
    }

    /// The running actor, waiting (up to `wait`) while a restart is under way.
    pub(super) async fn serving(&self, wait: Duration) -> Result<Serving, PluginError> {
        let mut phases = self.phase.subscribe();
        let waited = tokio::time::timeout(
            wait,
            phases.wait_for(|p| !matches!(p, Phase::Restarting | Phase::Idle | Phase::Starting)),
        )
        .await;
        let phase = match waited {
            Ok(Ok(phase)) => phase.clone(),
            _ => {
                return Err(PluginError::Unavailable(format!(
                    "plugin {:?} is restarting",
                    self.name()
                )));
            }
        };
        match phase {
            Phase::Running(serving) => Ok(serving),
            Phase::Failed(reason) => Err(PluginError::Unavailable(format!(
                "plugin {:?} has failed: {reason}",
                self.name()
            ))),
            _ => Err(PluginError::Unavailable(format!(
                "plugin {:?} is stopped",
                self.name()
            ))),
        }
    }

    /// Sends `call` to the running actor and waits for the answer.
    pub(crate) async fn call(
        &self,
        call: PluginCall,
        timeout: Duration,
    ) -> Result<Value, PluginError> {
        let serving = self.serving(timeout).await?;
        if let Some(direct) = &serving.direct {
            return direct(call, timeout).await;
        }
        match serving
            .actor
            .call(|reply| PluginMsg::Call(call, reply), Some(timeout))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(ractor::rpc::CallResult::Timeout) => Err(PluginError::Unavailable(format!(
                "plugin {:?} did not answer within {timeout:?}",
                self.name()
            ))),
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(PluginError::Unavailable(
                format!("plugin {:?} exited before answering", self.name()),
            )),
        }
    }

    /// Stops the running actor gracefully until `deadline`, then kills it, leaving the instance
    /// in phase `after`.
    pub(crate) async fn stop_actor(&self, deadline: Instant, after: Phase) -> Result<(), String> {
        let phase = self.phase.send_replace(after);
        let Phase::Running(serving) = phase else {
            return Ok(());
        };
        self.stop_gracefully(
            serving.actor,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
    }

    /// Kills the running actor at once, leaving the instance stopped: for an instance that did
    /// not stop by its deadline.
    pub(crate) fn kill(&self) {
        if let Phase::Running(serving) = self.phase.send_replace(Phase::Stopped) {
            serving.actor.kill();
        }
    }

    /// Asks `actor` to stop (the plugin's `stop` runs), kills it if it has not within `wait`,
    /// and waits for it to be gone, so that no task outlives the stop.
    pub(super) async fn stop_gracefully(
        &self,
        actor: ActorRef<PluginMsg>,
        wait: Duration,
    ) -> Result<(), String> {
        let stopped = actor.call(PluginMsg::Stop, Some(wait)).await;
        let result = match stopped {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => Ok(()),
            Ok(ractor::rpc::CallResult::Success(Err(error))) => Err(error.to_string()),
            // The actor had already exited: it is as stopped as it will get.
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Ok(()),
            Ok(ractor::rpc::CallResult::Timeout) => {
                actor.kill();
                Err(format!(
                    "plugin {:?} did not stop before its deadline; killed",
                    self.name()
                ))
            }
        };
        // The actor exits right after answering; wait for it so that no task outlives the stop.
        let _ = tokio::time::timeout(Duration::from_secs(1), actor.wait(None)).await;
        result
    }
}

impl std::fmt::Debug for InstanceCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("name", &self.spec.spec.name)
            .field("kind", &self.kind_version())
            .finish_non_exhaustive()
    }
}
