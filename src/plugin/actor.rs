//! The actor that runs one plugin: its calls one at a time, in order, with panics caught.
//!
//! The actor catches panics itself, so the caller whose call crashed the plugin gets an error
//! reply instead of a dropped one, and the restarter is told at once. A plugin that returns
//! [`PluginError::Crash`] or [`PluginError::Exit`] ends its actor the same way.
//!
//! | message | sent by | reply |
//! |---|---|---|
//! | [`PluginMsg::Call`] | callers, through the instance | the plugin's answer |
//! | [`PluginMsg::Export`] | the swap, after the instance drained | the state to hand over |
//! | [`PluginMsg::Migrate`] | the swap, before the new instance is published | whether it took the state |
//! | [`PluginMsg::Stop`] | the instance, at stop | once the plugin's `stop` returned; then it exits |
//! | [`PluginMsg::Closed`] | its own watch on [`DirectCalls`](crate::plugin::DirectCalls) | none: the instance has failed |
//!
//! A plugin that answers calls itself ([`Plugin::direct_calls`], a process plugin) is called
//! around the actor, concurrently; the actor keeps its start, state, stop and failure.

use std::sync::{Arc, OnceLock, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use swapvisor_actors::guard;

use super::core::{InstanceCore, Phase};
use super::restart::RestartMsg;
use crate::extension::plugin::{DirectCall, Plugin, PluginCall, PluginContext, PluginError};

/// Messages to a plugin actor. Sent by its instance only.
pub(crate) enum PluginMsg {
    /// A call; answered with the plugin's result.
    Call(PluginCall, RpcReplyPort<Result<Value, PluginError>>),
    /// Hand over state by the deadline; answered with it, or why not. An export cut short
    /// at the deadline is dropped and the actor serves on, its state where it was.
    Export(
        tokio::time::Instant,
        RpcReplyPort<Result<Option<Value>, PluginError>>,
    ),
    /// Take over a predecessor's state.
    Migrate(Value, RpcReplyPort<Result<(), PluginError>>),
    /// Stop gracefully; answered once the plugin's `stop` returned.
    Stop(RpcReplyPort<Result<(), PluginError>>),
    /// The plugin's direct calls closed (its process exited): it has failed.
    Closed(String),
}

// Local only: ractor's `cluster` feature (on with `fleet`) drops the blanket `Message` impl.
#[cfg(feature = "fleet")]
impl ractor::Message for PluginMsg {}

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
