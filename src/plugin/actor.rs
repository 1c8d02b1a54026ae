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

use std::sync::{Arc, OnceLock, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use swapvisor_actors::guard;

use super::core::{InstanceCore, Phase, Serving};
use super::link::{RestartLink, RestartMsg};
use super::messages::PluginMsg;
use crate::extension::metrics::MetricsHandle;
use crate::extension::plugin::{DirectCall, Plugin, PluginContext, PluginError};

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
}

/// Spawns an actor running `plugin` for the instance whose core is `core`, linked to the
/// restarter of `link`, and publishes it in the core's phase.
pub(super) async fn spawn(
    core: &Arc<InstanceCore>,
    plugin: Box<dyn Plugin>,
    link: &RestartLink,
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
    let args = PluginActorArgs {
        plugin,
        context: PluginContext {
            name: core.name().to_owned(),
            metrics: handle.clone(),
        },
        metrics,
        instance: Arc::downgrade(core),
        restarter: restarter.clone(),
        started: started.clone(),
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

/// What a plugin's start tells the instance: how to call it, and what runs.
pub(crate) struct Started {
    pub(crate) direct: Option<DirectCall>,
    pub(crate) pid: Option<u32>,
    /// The version once started (a process plugin learns it in its handshake).
    pub(crate) version: String,
}

pub(crate) struct PluginActorState {
    plugin: Box<dyn Plugin>,
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
