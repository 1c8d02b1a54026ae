//! The actor that runs one plugin: its calls one at a time, in order, with panics caught.
//!
//! The actor catches panics itself, so the caller whose call crashed the plugin gets an error
//! reply instead of a dropped one, and the restarter is told at once. A plugin that returns
//! [`PluginError::Crash`] or [`PluginError::Exit`] ends its actor the same way.
//!
//! Its messages are in [`super::messages`]; [`spawn`] starts one for an instance's core.
//!
//! A plugin that answers calls itself ([`Plugin::direct_calls`], a process plugin) is called
//! around the actor, concurrently; the actor keeps its start, state, stop and failure.
//!
//! An actor spawned to replace a crashed one (or for a process's first instance of a name,
//! when the state folder holds a checkpoint) offers the slot's checkpoints to the plugin's
//! `migrate` after its start and before it is published, so the first call already finds the
//! state of the last checkpoint.

use std::sync::{Arc, OnceLock, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use swapvisor_actors::guard;
use tokio::time::Instant;

use super::checkpoint::{Checkpoint, Identity, ImportCause};
use super::checkpoints::CheckpointStore;
use super::core::{InstanceCore, Phase, Serving};
use super::link::{RestartLink, RestartMsg};
use super::messages::PluginMsg;
use crate::extension::metrics::MetricsHandle;
use crate::extension::plugin::{
    CheckpointError, CheckpointSink, DirectCall, Plugin, PluginContext, PluginError,
};

pub(crate) struct PluginActor;

pub(crate) struct PluginActorArgs {
    pub(super) plugin: Box<dyn Plugin>,
    pub(super) context: PluginContext,
    /// The actor's metrics, held until it exits.
    pub(super) metrics: Option<crate::metrics::MetricScope>,
    pub(super) instance: Weak<InstanceCore>,
    pub(super) restarter: ActorRef<RestartMsg>,
    /// Where the start leaves what it learned.
    pub(super) started: Arc<OnceLock<Started>>,
    /// Who the plugin's checkpoints say took them, once its start tells its version.
    pub(super) identity: Arc<OnceLock<Identity>>,
    /// Offer the slot's checkpoints after the start, by the deadline, and why.
    pub(super) import: Option<(ImportCause, Instant)>,
}

/// Spawns an actor running `plugin` for the instance whose core is `core`, linked to the
/// restarter of `link`, and publishes it in the core's phase. With `import`, the slot's
/// checkpoints are offered to the plugin before it is published.
pub(super) async fn spawn(
    core: &Arc<InstanceCore>,
    plugin: Box<dyn Plugin>,
    link: &RestartLink,
    import: Option<ImportCause>,
) -> Result<(), String> {
    // Only an idle or crashed instance may get a new actor; one stopped (or swapped out and
    // stopped) meanwhile must not come back to life.
    let claimed = core.transition(
        |p| matches!(p, Phase::Idle | Phase::Restarting),
        Phase::Starting,
    );
    if !claimed {
        return Err(format!(
            "plugin {:?} was stopped before it could start",
            core.name()
        ));
    }
    let restarter = &link.restarter;
    let started = Arc::new(std::sync::OnceLock::new());
    // The actor's metrics: shown once it is published, let go when it exits.
    let metrics = core
        .slot_metrics()
        .map(|store| store.scope("plugin", core.name()));
    let handle = metrics
        .as_ref()
        .map_or_else(MetricsHandle::detached, |m| m.handle());
    let identity = Arc::new(OnceLock::new());
    let args = PluginActorArgs {
        plugin,
        context: PluginContext {
            name: core.name().to_owned(),
            metrics: handle.clone(),
            checkpoints: Some(checkpoint_sink(core, &identity)),
            code: Some(core.code_hold()),
        },
        metrics,
        instance: Arc::downgrade(core),
        restarter: restarter.clone(),
        started: started.clone(),
        identity,
        import: import.map(|cause| (cause, Instant::now() + core.spec.swap.start_timeout)),
    };
    let spawned = Actor::spawn_linked(None, PluginActor, args, restarter.get_cell()).await;
    let actor = match spawned {
        Ok((actor, _)) => actor,
        Err(error) => {
            core.transition(|p| matches!(p, Phase::Starting), Phase::Restarting);
            return Err(match error {
                ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                other => other.to_string(),
            });
        }
    };
    link.actors.insert(actor.get_id(), Arc::downgrade(core));
    // Set by the actor's start, which has finished.
    let serving = Serving {
        actor: actor.clone(),
        direct: started.get().and_then(|s| s.direct.clone()),
        pid: started.get().and_then(|s| s.pid),
        version: started
            .get()
            .filter(|s| s.version != core.version)
            .map(|s| Arc::from(s.version.as_str())),
    };
    let published = core.transition(|p| matches!(p, Phase::Starting), Phase::Running(serving));
    if published {
        core.serving_again();
        handle.expose();
    } else {
        // Stopped while it started: stop what was just made, gracefully, then for sure.
        let _ = core
            .stop_gracefully(actor, core.spec.swap.stop_timeout)
            .await;
        return Err(format!(
            "plugin {:?} was stopped while it started",
            core.name()
        ));
    }
    Ok(())
}

/// Where the plugin's [`PluginContext::checkpoint`] goes: the slot's store, unless another
/// instance has replaced this one (a stale state must not become the latest).
fn checkpoint_sink(core: &Arc<InstanceCore>, identity: &Arc<OnceLock<Identity>>) -> CheckpointSink {
    let (instance, identity) = (Arc::downgrade(core), identity.clone());
    let store = core.checkpoints().clone();
    let built = core.identity(&core.version);
    Arc::new(move |state: Value| {
        let live = instance.upgrade().filter(|core| !core.superseded());
        if live.is_none() {
            let why = "a checkpoint from an instance that was replaced was refused";
            store.refuse(why.to_owned());
            return Err(CheckpointError::NotKept(why.to_owned()));
        }
        store.take(identity.get().unwrap_or(&built), state)
    })
}

/// Offers `candidates` to the plugin's `migrate`, best first, until one is taken (by
/// `deadline`): its sequence number, recorded in the store; each refusal is logged and
/// counted, and the plugin serves on as it was, afresh if it took none. A `migrate` that
/// refuses a state must leave the plugin as it found it.
async fn offer(
    plugin: &mut Box<dyn Plugin>,
    store: &CheckpointStore,
    candidates: Vec<Checkpoint>,
    cause: ImportCause,
    deadline: Instant,
) -> Result<u64, String> {
    let mut refusals = Vec::new();
    for candidate in candidates {
        let migrated = guard::run(Some(deadline), || plugin.migrate(candidate.state.clone()))
            .await
            .unwrap_or_else(|interrupted| {
                Err(PluginError::Failed(format!("migrate {interrupted}")))
            });
        match migrated {
            Ok(()) => {
                store.imported(&candidate, cause);
                return Ok(candidate.sequence);
            }
            Err(error) => {
                let why = format!(
                    "the plugin refused checkpoint {} (taken by {}@{}): {error}",
                    candidate.sequence, candidate.kind, candidate.version
                );
                store.refuse(why.clone());
                refusals.push(why);
            }
        }
    }
    Err(refusals.join("; "))
}

/// What a plugin's start tells the instance: how to call it, and what runs.
pub(crate) struct Started {
    pub(crate) direct: Option<DirectCall>,
    pub(crate) pid: Option<u32>,
    /// The version once started (a process plugin learns it in its handshake).
    pub(crate) version: String,
}

pub(crate) struct PluginActorState {
    plugin: Box<dyn Plugin>,
    checkpoints: Arc<CheckpointStore>,
    instance: Weak<InstanceCore>,
    restarter: ActorRef<RestartMsg>,
    /// Turns the closing of the plugin's direct calls into a [`PluginMsg::Closed`].
    closed_watch: Option<tokio::task::JoinHandle<()>>,
    /// Let go of when the actor stops, which takes its metrics off `/metrics`.
    metrics: Option<crate::metrics::MetricScope>,
}

impl PluginActorState {
    /// Tells the restarter that this actor is exiting on its own, and stops it.
    fn exit(&self, myself: &ActorRef<PluginMsg>, abnormal: bool, reason: String) {
        if let Some(instance) = self.instance.upgrade() {
            instance.record_error(&reason);
            instance.set_phase(Phase::Restarting);
        }
        let _ = self.restarter.send_message(RestartMsg::Exited {
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
        myself: ActorRef<PluginMsg>,
        mut args: PluginActorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let started = guard::run(None, || args.plugin.start(&args.context)).await;
        match started {
            Ok(Ok(())) => {
                let Some(core) = args.instance.upgrade() else {
                    return Err("the plugin instance is gone".into());
                };
                let checkpoints = core.checkpoints().clone();
                let identity = core.identity(args.plugin.version());
                if let Some((cause, deadline)) = args.import {
                    let candidates = checkpoints.candidates(&identity, None);
                    if !candidates.is_empty() {
                        let offered =
                            offer(&mut args.plugin, &checkpoints, candidates, cause, deadline);
                        if let Err(why) = offered.await {
                            tracing::warn!(plugin = %core.name(), "starting afresh: {why}");
                        }
                    }
                }
                let _ = args.identity.set(identity);
                drop(core);
                let mut started = Started {
                    direct: None,
                    pid: None,
                    version: args.plugin.version().to_owned(),
                };
                let closed_watch = args.plugin.direct_calls().map(|direct| {
                    started.direct = Some(direct.call);
                    started.pid = direct.pid;
                    let closed = direct.closed;
                    tokio::spawn(async move {
                        let reason = closed.await;
                        let _ = myself.send_message(PluginMsg::Closed(reason));
                    })
                });
                let _ = args.started.set(started);
                Ok(PluginActorState {
                    plugin: args.plugin,
                    checkpoints,
                    instance: args.instance,
                    restarter: args.restarter,
                    closed_watch,
                    metrics: args.metrics,
                })
            }
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
            PluginMsg::Export(deadline, reply) => {
                let exported = guard::run(Some(deadline), || state.plugin.export_state())
                    .await
                    .unwrap_or_else(|interrupted| {
                        Err(PluginError::Failed(format!("export {interrupted}")))
                    });
                let _ = reply.send(exported);
            }
            PluginMsg::Closed(reason) => state.exit(&myself, true, reason),
            PluginMsg::Migrate(previous, reply) => {
                let migrated = guard::run(None, || state.plugin.migrate(previous))
                    .await
                    .unwrap_or_else(|interrupted| {
                        Err(PluginError::Failed(format!("migrate {interrupted}")))
                    });
                let _ = reply.send(migrated);
            }
            PluginMsg::Offer {
                candidates,
                cause,
                deadline,
                reply,
            } => {
                let offered = offer(
                    &mut state.plugin,
                    &state.checkpoints,
                    candidates,
                    cause,
                    deadline,
                );
                let _ = reply.send(offered.await);
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

    async fn post_stop(
        &self,
        _myself: ActorRef<PluginMsg>,
        state: &mut PluginActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(watch) = state.closed_watch.take() {
            watch.abort();
        }
        // Its metrics go before anyone waiting for the exit hears of it.
        state.metrics = None;
        Ok(())
    }
}
