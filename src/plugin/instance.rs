//! A plugin instance as a swappable unit, and the actor that runs it.
//!
//! [`PluginInstance`] is what a plugin's slot publishes. It owns, at any moment, at most one
//! running actor for the plugin; a crash restart replaces that actor inside the same instance
//! (the slot does not change), while a per-plugin reload swaps in a whole new instance through
//! the generic swap protocol, with the old instance's state handed over.
//!
//! The actor runs the [`Plugin`]'s calls one at a time. It catches panics itself, so the caller
//! whose call crashed the plugin gets an error reply instead of a dropped one, and the restart
//! supervisor is told at once.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use swapvisor_actors::guard;
use swapvisor_actors::{BuildFailure, Stage, SwapSettings, Unit, UnitError};
use tokio::sync::watch;
use tokio::time::Instant;

use super::host::HostShared;
use super::{Plugin, PluginBuild, PluginCall, PluginContext, PluginError};
use crate::config::{PluginSpec, RestartSettings, place};
use crate::registry::Registry;

/// What a plugin reload carries: the instance's spec (config expanded), its restart settings,
/// and the swap settings of the engine config it came from.
#[derive(Debug, Clone)]
pub struct PluginUnitSpec {
    /// The `plugins:` entry, with `${VAR}` expanded.
    pub spec: PluginSpec,
    /// Its restart settings, with defaults applied.
    pub restart: RestartSettings,
    /// Timeouts for swapping it.
    pub swap: SwapSettings,
    /// Check that the new instance still provides every type the live engine uses. Reloads
    /// made by an engine reload skip it: the new engine was checked as a whole.
    pub guard_types: bool,
}

impl PartialEq for PluginUnitSpec {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && self.restart == other.restart
    }
}

impl PluginUnitSpec {
    /// A spec for `spec` with default restart and swap settings.
    pub fn new(spec: PluginSpec, restart: RestartSettings) -> Self {
        Self {
            spec,
            restart,
            swap: SwapSettings::default(),
            guard_types: true,
        }
    }
}

/// What every build of one plugin slot shares.
pub struct PluginUnitContext {
    pub(crate) registry: Arc<Registry>,
    pub(crate) host: Weak<HostShared>,
    /// The slot's crash record, shared by all its instances so that a reload does not reset it.
    pub(crate) record: Arc<CrashRecord>,
}

/// How often a plugin slot's instances were restarted after a crash, and the latest error.
#[derive(Debug, Default)]
pub(crate) struct CrashRecord {
    pub(crate) restarts: std::sync::atomic::AtomicU32,
    pub(crate) last_error: Mutex<Option<String>>,
}

/// Where an instance's actor is.
#[derive(Clone)]
pub(crate) enum Phase {
    /// Built, not started.
    Idle,
    /// Serving calls.
    Running(ActorRef<PluginMsg>),
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

/// One plugin instance: the unit a plugin slot publishes. It derefs to its shared core, which
/// its actor and the restart supervisor refer to.
pub struct PluginInstance {
    core: Arc<InstanceCore>,
}

impl std::ops::Deref for PluginInstance {
    type Target = InstanceCore;

    fn deref(&self) -> &InstanceCore {
        &self.core
    }
}

/// The shared part of a plugin instance.
pub struct InstanceCore {
    spec: Arc<PluginUnitSpec>,
    version: String,
    kind_version: String,
    prototype: Mutex<Option<Box<dyn Plugin>>>,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) host: Weak<HostShared>,
    pub(crate) record: Arc<CrashRecord>,
}

impl std::fmt::Debug for InstanceCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("name", &self.spec.spec.name)
            .field("kind", &self.kind_version)
            .finish_non_exhaustive()
    }
}

/// What try-activate reports for a plugin: its kind and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginSummary {
    /// The plugin kind.
    pub kind: String,
    /// Its version.
    pub version: String,
}

/// Builds a fresh plugin of `spec`'s kind with `registry`'s factory.
pub(crate) fn build_plugin(
    registry: &Registry,
    spec: &PluginSpec,
) -> Result<Box<dyn Plugin>, BuildFailure> {
    let factory = registry.plugin_factory(&spec.type_name).ok_or_else(|| {
        BuildFailure::new(
            Stage::Validate,
            crate::config::unknown_name(
                "plugin type",
                &spec.type_name,
                "registered",
                registry.plugin_kinds(),
            ),
        )
    })?;
    let at = place::field(&format!("plugin {:?}", spec.name), "config");
    let build = PluginBuild {
        name: &spec.name,
        config: &spec.config,
        place: &at,
    };
    guard::run_sync(|| factory.build(&build))
        .map_err(|interrupted| {
            BuildFailure::new(Stage::Build, format!("the plugin factory {interrupted}"))
        })?
        .map_err(|errors| BuildFailure::new(Stage::Validate, errors.to_string()))
}

impl PluginInstance {
    pub(crate) fn core(&self) -> &Arc<InstanceCore> {
        &self.core
    }
}

impl InstanceCore {
    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.spec.spec.name
    }

    /// The spec this instance was built from.
    pub fn unit_spec(&self) -> &Arc<PluginUnitSpec> {
        &self.spec
    }

    /// The plugin's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    pub(crate) fn record_error(&self, error: &str) {
        *self
            .record
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
    }

    /// The running actor, waiting (up to `wait`) while a restart is under way.
    pub(crate) async fn actor(&self, wait: Duration) -> Result<ActorRef<PluginMsg>, PluginError> {
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
            Phase::Running(actor) => Ok(actor),
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
        let actor = self.actor(timeout).await?;
        match actor
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

    /// Spawns an actor running `plugin`, linked to the restart supervisor, and publishes it.
    pub(crate) async fn spawn_actor(
        self: &Arc<Self>,
        plugin: Box<dyn Plugin>,
    ) -> Result<(), String> {
        // Only an idle or crashed instance may get a new actor; one stopped (or swapped out and
        // stopped) meanwhile must not come back to life.
        let claimed = self.transition(
            |p| matches!(p, Phase::Idle | Phase::Restarting),
            Phase::Starting,
        );
        if !claimed {
            return Err(format!(
                "plugin {:?} was stopped before it could start",
                self.name()
            ));
        }
        let host = self.host.upgrade().ok_or("the plugin host is gone")?;
        let supervisor = host.restart_supervisor().await?;
        let args = PluginActorArgs {
            plugin,
            context: PluginContext {
                name: self.name().to_owned(),
            },
            instance: Arc::downgrade(self),
            supervisor: supervisor.clone(),
        };
        let spawned = Actor::spawn_linked(None, PluginActor, args, supervisor.get_cell()).await;
        let actor = match spawned {
            Ok((actor, _)) => actor,
            Err(error) => {
                self.transition(|p| matches!(p, Phase::Starting), Phase::Restarting);
                return Err(match error {
                    ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                    other => other.to_string(),
                });
            }
        };
        host.actors.insert(actor.get_id(), Arc::downgrade(self));
        let published = self.transition(
            |p| matches!(p, Phase::Starting),
            Phase::Running(actor.clone()),
        );
        if !published {
            // Stopped while it started: stop what was just made, gracefully, then for sure.
            let _ = self
                .stop_gracefully(actor, self.spec.swap.stop_timeout)
                .await;
            return Err(format!(
                "plugin {:?} was stopped while it started",
                self.name()
            ));
        }
        Ok(())
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

    /// Stops the running actor gracefully until `deadline`, then kills it, leaving the instance
    /// in phase `after`.
    pub(crate) async fn stop_actor(&self, deadline: Instant, after: Phase) -> Result<(), String> {
        let phase = self.phase.send_replace(after);
        let Phase::Running(actor) = phase else {
            return Ok(());
        };
        self.stop_gracefully(actor, deadline.saturating_duration_since(Instant::now()))
            .await
    }

    /// Asks `actor` to stop (the plugin's `stop` runs), kills it if it has not within `wait`,
    /// and waits for it to be gone, so that no task outlives the stop.
    async fn stop_gracefully(
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

impl Unit for PluginInstance {
    type Spec = PluginUnitSpec;
    type Context = PluginUnitContext;
    type Summary = PluginSummary;
    type State = Value;

    async fn build(
        spec: Arc<PluginUnitSpec>,
        context: Arc<PluginUnitContext>,
    ) -> Result<Self, BuildFailure> {
        let plugin = build_plugin(&context.registry, &spec.spec)?;
        if spec.guard_types
            && let Some(host) = context.host.upgrade()
        {
            let mut provided = Registry::new();
            let kind = format!("plugin {}", plugin.name());
            provided
                .contributing(&kind, |r| plugin.register(r))
                .map_err(|e| BuildFailure::new(Stage::Validate, e.to_string()))?;
            host.check_types(&spec.spec.name, &provided)
                .map_err(|message| BuildFailure::new(Stage::Validate, message))?;
        }
        let version = plugin.version().to_owned();
        let core = InstanceCore {
            kind_version: format!("{}@{}", plugin.name(), version),
            version,
            prototype: Mutex::new(Some(plugin)),
            phase: watch::channel(Phase::Idle).0,
            registry: context.registry.clone(),
            host: context.host.clone(),
            record: context.record.clone(),
            spec,
        };
        Ok(PluginInstance {
            core: Arc::new(core),
        })
    }

    async fn start(&self, _deadline: Instant) -> Result<(), UnitError> {
        let prototype = self
            .prototype
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let plugin = match prototype {
            Some(plugin) => plugin,
            // Started again after a stop (a stop-first restore): begin afresh.
            None => build_plugin(&self.registry, &self.spec.spec).map_err(UnitError::new)?,
        };
        self.core
            .spawn_actor(plugin)
            .await
            .map_err(|e| UnitError::new(format!("plugin {:?} failed to start: {e}", self.name())))
    }

    async fn stop(&self, deadline: Instant) -> Result<(), UnitError> {
        self.stop_actor(deadline, Phase::Stopped)
            .await
            .map_err(UnitError::new)
    }

    fn spec(&self) -> Arc<PluginUnitSpec> {
        self.spec.clone()
    }

    fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(&self.spec.spec).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}:{hash}", self.kind_version)
    }

    fn summary(&self) -> PluginSummary {
        PluginSummary {
            kind: self.spec.spec.type_name.clone(),
            version: self.version.clone(),
        }
    }

    fn swap_settings(&self) -> SwapSettings {
        self.spec.swap
    }

    fn hands_over_state(&self) -> bool {
        true
    }

    async fn export_state(&self) -> Option<Value> {
        let Phase::Running(actor) = self.phase.borrow().clone() else {
            return None; // crashed or stopped: there is no state to hand over
        };
        match actor
            .call(PluginMsg::Export, Some(self.spec.swap.stop_timeout))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(state)) => state,
            _ => None,
        }
    }

    async fn import_state(&self, state: Value) -> Result<(), UnitError> {
        let Phase::Running(actor) = self.phase.borrow().clone() else {
            return Err(UnitError::new(format!(
                "plugin {:?} is not running",
                self.name()
            )));
        };
        match actor
            .call(
                |reply| PluginMsg::Migrate(state, reply),
                Some(self.spec.swap.start_timeout),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => Ok(()),
            Ok(ractor::rpc::CallResult::Success(Err(error))) => Err(UnitError::new(format!(
                "plugin {:?} refused the previous state: {error}",
                self.name()
            ))),
            _ => Err(UnitError::new(format!(
                "plugin {:?} did not take the previous state",
                self.name()
            ))),
        }
    }
}

/// Messages to a plugin actor. Sent by [`PluginInstance`] only.
pub(crate) enum PluginMsg {
    /// A call; answered with the plugin's result.
    Call(PluginCall, RpcReplyPort<Result<Value, PluginError>>),
    /// Hand over state; answered with it.
    Export(RpcReplyPort<Option<Value>>),
    /// Take over a predecessor's state.
    Migrate(Value, RpcReplyPort<Result<(), PluginError>>),
    /// Stop gracefully; answered once the plugin's `stop` returned.
    Stop(RpcReplyPort<Result<(), PluginError>>),
}

pub(crate) struct PluginActor;

pub(crate) struct PluginActorArgs {
    plugin: Box<dyn Plugin>,
    context: PluginContext,
    instance: Weak<InstanceCore>,
    supervisor: ActorRef<super::restart::RestartMsg>,
}

pub(crate) struct PluginActorState {
    plugin: Box<dyn Plugin>,
    instance: Weak<InstanceCore>,
    supervisor: ActorRef<super::restart::RestartMsg>,
}

impl PluginActorState {
    /// Tells the restart supervisor that this actor is exiting on its own, and stops it.
    fn exit(&self, myself: &ActorRef<PluginMsg>, abnormal: bool, reason: String) {
        if let Some(instance) = self.instance.upgrade() {
            instance.record_error(&reason);
            instance.set_phase(Phase::Restarting);
        }
        let _ = self
            .supervisor
            .send_message(super::restart::RestartMsg::Exited {
                instance: self.instance.clone(),
                abnormal,
                reason,
            });
        myself.stop(None);
    }
}

impl Actor for PluginActor {
    type Msg = PluginMsg;
    type State = PluginActorState;
    type Arguments = PluginActorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PluginMsg>,
        mut args: PluginActorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let started = guard::run(None, || args.plugin.start(&args.context)).await;
        match started {
            Ok(Ok(())) => Ok(PluginActorState {
                plugin: args.plugin,
                instance: args.instance,
                supervisor: args.supervisor,
            }),
            Ok(Err(error)) => Err(error.to_string().into()),
            Err(interrupted) => Err(interrupted.to_string().into()),
        }
    }

    async fn handle(
        &self,
        myself: ActorRef<PluginMsg>,
        message: PluginMsg,
        state: &mut PluginActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PluginMsg::Call(call, reply) => {
                let result = guard::run(None, || state.plugin.handle(call)).await;
                match result {
                    // The exit is recorded before the caller hears of it, so that whoever the
                    // caller tells never sees the instance as still running.
                    Ok(Err(PluginError::Crash(reason))) => {
                        state.exit(&myself, true, reason.clone());
                        let _ = reply.send(Err(PluginError::Crash(reason)));
                    }
                    Ok(Err(PluginError::Exit)) => {
                        state.exit(&myself, false, "the plugin exited".to_owned());
                        let _ = reply.send(Ok(Value::Null));
                    }
                    Ok(result) => {
                        let _ = reply.send(result);
                    }
                    Err(interrupted) => {
                        let reason = interrupted.to_string();
                        state.exit(&myself, true, reason.clone());
                        let _ = reply.send(Err(PluginError::Crash(reason)));
                    }
                }
            }
            PluginMsg::Export(reply) => {
                let exported = guard::run_sync(|| state.plugin.export_state());
                let _ = reply.send(exported.ok().flatten());
            }
            PluginMsg::Migrate(previous, reply) => {
                let migrated = guard::run(None, || state.plugin.migrate(previous))
                    .await
                    .unwrap_or_else(|interrupted| {
                        Err(PluginError::Failed(format!("migrate {interrupted}")))
                    });
                let _ = reply.send(migrated);
            }
            PluginMsg::Stop(reply) => {
                let stopped = guard::run(None, || state.plugin.stop()).await;
                let result = stopped.unwrap_or_else(|interrupted| {
                    Err(PluginError::Failed(format!("stop {interrupted}")))
                });
                let _ = reply.send(result);
                myself.stop(None);
            }
        }
        Ok(())
    }
}
