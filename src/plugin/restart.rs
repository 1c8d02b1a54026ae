//! The restarter: Erlang/OTP restart semantics for a runtime's plugin instances.
//!
//! (It is what OTP calls a supervisor; here that name belongs to the swap protocol's
//! coordinator, so this actor is the *restarter*.) Every plugin actor is linked to this one
//! actor. When a plugin exits on its own (a panic, a
//! [`PluginError::Crash`](super::PluginError::Crash), or a normal
//! [`PluginError::Exit`](super::PluginError::Exit)), it decides, exactly as an OTP supervisor
//! would:
//!
//! - **restart type** (per instance): `permanent` is always restarted, `transient` only after
//!   an abnormal exit, `temporary` never;
//! - **intensity** (per instance): more than `maxRestarts` restarts within `within` and the
//!   instance is marked failed instead, and the failure is escalated to the runtime's
//!   Supervisor (which may revert a config still on probation);
//! - **strategy** (per engine config, see [`super::groups`]): `one_for_one` restarts the
//!   instance alone, `one_for_all` every instance of the config, `rest_for_one` the instance
//!   and those declared after it; siblings are stopped gracefully first, in reverse order,
//!   then all restart in config order;
//! - **backoff**: the restart waits `initial * 2^(n-1)` (capped at `max`, ±20% jitter) where
//!   `n` counts this instance's restarts within the intensity window.
//!
//! A restarted instance begins from its factory, as an OTP process re-initialises, unless the
//! plugin takes checkpoints: then its latest checkpoint is offered to `migrate` first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::Instant;

use super::actor;
use super::checkpoint::ImportCause;
use super::core::{InstanceCore, Phase};
use super::groups::{RestartGroups, RestartSet};
use super::instance::build_plugin;
use super::link::{ActorIndex, RestartLink, RestartMsg};
use crate::config::RestartPolicy;

/// Where an instance that exceeds its restart intensity is reported: the engine's Supervisor.
pub(crate) type Escalation = Arc<dyn Fn(String) + Send + Sync>;

/// Restarts crashed plugin actors under their restart policy.
pub(crate) struct Restarter;

/// What the restarter is spawned with: narrow views of the host.
pub(crate) struct RestarterArgs {
    /// The attached engines' instances, for the strategy's siblings.
    pub(crate) groups: Arc<RestartGroups>,
    /// Every running plugin actor, for failures outside a call.
    pub(crate) actors: Arc<ActorIndex>,
    /// Where crash loops go; `None` for engines used on their own.
    pub(crate) escalation: Option<Escalation>,
}

pub(crate) struct RestarterState {
    groups: Arc<RestartGroups>,
    /// This restarter and the actor index: what a restarted actor is linked to.
    link: RestartLink,
    escalation: Option<Escalation>,
    /// When each instance (by name) was restarted, within its intensity window.
    restarts: HashMap<String, VecDeque<Instant>>,
}

impl Actor for Restarter {
    type Msg = RestartMsg;
    type State = RestarterState;
    type Arguments = RestarterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RestartMsg>,
        args: RestarterArgs,
    ) -> Result<RestarterState, ActorProcessingErr> {
        Ok(RestarterState {
            groups: args.groups,
            link: RestartLink {
                restarter: myself,
                actors: args.actors,
            },
            escalation: args.escalation,
            restarts: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RestartMsg>,
        message: RestartMsg,
        state: &mut RestarterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RestartMsg::Exited {
                instance,
                abnormal,
                reason,
            } => {
                let Some(instance) = instance.upgrade() else {
                    return Ok(());
                };
                state.exited(&myself, &instance, abnormal, reason).await;
            }
            RestartMsg::Restart { instances } => {
                for core in instances.iter().filter_map(Weak::upgrade) {
                    let name = core.name().to_owned();
                    // Reloaded, removed or stopped meanwhile: not ours to restart.
                    if !core.is_current() || !matches!(core.phase(), Phase::Restarting) {
                        continue;
                    }
                    // Bounded, so that one plugin hanging in start cannot hold up every other
                    // plugin's restart behind it in this mailbox.
                    let timeout = core.unit_spec().swap.start_timeout;
                    // From its latest checkpoint, if it takes them; afresh otherwise.
                    let import = (!core.checkpoints().is_empty()).then_some(ImportCause::Restart);
                    let restarted = match build_plugin(core.registry(), core.unit_spec()) {
                        Ok(plugin) => {
                            let spawned = actor::spawn(&core, plugin, &state.link, import);
                            match tokio::time::timeout(timeout, spawned).await {
                                Ok(result) => result,
                                Err(_) => {
                                    core.transition(
                                        |p| matches!(p, Phase::Starting),
                                        Phase::Restarting,
                                    );
                                    Err(format!("did not start within {timeout:?}"))
                                }
                            }
                        }
                        Err(failure) => Err(failure.message),
                    };
                    match restarted {
                        Ok(()) => tracing::info!(plugin = %name, "plugin restarted"),
                        Err(error) if matches!(core.phase(), Phase::Restarting) => {
                            // A failed restart counts as another crash.
                            let _ = myself.send_message(RestartMsg::Exited {
                                instance: Arc::downgrade(&core),
                                abnormal: true,
                                reason: format!("restart failed: {error}"),
                            });
                        }
                        Err(error) => {
                            tracing::debug!(plugin = %name, %error, "restart abandoned: the instance was stopped")
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RestartMsg>,
        event: SupervisionEvent,
        state: &mut RestarterState,
    ) -> Result<(), ActorProcessingErr> {
        // The default would stop the restarter whenever a plugin actor exits.
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.link.actors.take(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                // Plugin actors catch their own panics and report them; this is a failure
                // outside a call (a bug in the actor itself). Treat it as a crash.
                tracing::warn!(actor = %cell.get_id(), %error, "a plugin actor failed outside a call");
                if let Some(instance) = state.link.actors.take(&cell.get_id())
                    && let Some(instance) = instance.upgrade()
                {
                    instance.record_error(&error.to_string());
                    state
                        .exited(&myself, &instance, true, error.to_string())
                        .await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl RestarterState {
    async fn exited(
        &mut self,
        myself: &ActorRef<RestartMsg>,
        instance: &Arc<InstanceCore>,
        abnormal: bool,
        reason: String,
    ) {
        let name = instance.name().to_owned();
        // Only the instance the slot publishes now is restarted; an old one being swapped out
        // is finished with.
        if !instance.is_current() {
            return;
        }
        let restart = instance.unit_spec().restart;
        let restarting = match restart.policy {
            RestartPolicy::Permanent => true,
            RestartPolicy::Transient => abnormal,
            RestartPolicy::Temporary => false,
        };
        if !restarting {
            tracing::info!(plugin = %name, %reason, policy = ?restart.policy, "plugin exited and is not restarted");
            instance.set_phase(if abnormal {
                Phase::Failed(
                    format!(
                        "{reason} (restart policy {:?}: not restarted)",
                        restart.policy
                    )
                    .to_lowercase(),
                )
            } else {
                Phase::Stopped
            });
            return;
        }
        let now = Instant::now();
        let log = self.restarts.entry(name.clone()).or_default();
        while log
            .front()
            .is_some_and(|at| now.duration_since(*at) > restart.within)
        {
            log.pop_front();
        }
        if log.len() as u32 >= restart.max_restarts {
            let escalation = format!(
                "plugin {name:?} exceeded its restart intensity ({} restarts within {}); last error: {reason}",
                restart.max_restarts,
                humantime::format_duration(restart.within)
            );
            tracing::error!(plugin = %name, "{escalation}");
            instance.record_error(&reason);
            instance.set_phase(Phase::Failed(escalation.clone()));
            log.clear();
            // A per-plugin reload on probation is reverted by the plugin's own Supervisor;
            // anything else is the engine's to judge.
            if instance.escalate_to_slot(escalation.clone()).await {
                return;
            }
            match &self.escalation {
                Some(escalate) => escalate(escalation),
                None => tracing::error!("plugin escalation with no Supervisor to escalate to"),
            }
            return;
        }
        log.push_back(now);
        let attempt = log.len() as u32;
        // The exact instances to restart, decided now: the crashed one, and the siblings the
        // strategy takes along that are serving (a failed or stopped sibling, or a temporary
        // one, stays as it is).
        let cores: Vec<Arc<InstanceCore>> = match self.groups.restart_set(&name) {
            RestartSet::Alone => vec![instance.clone()],
            RestartSet::These(slots) => slots
                .iter()
                .filter_map(|slot| {
                    if slot.name() == name {
                        Some(instance.clone())
                    } else {
                        slot.current_core()
                    }
                })
                .filter(|core| {
                    Arc::ptr_eq(core, instance)
                        || (core.unit_spec().restart.policy != RestartPolicy::Temporary
                            && matches!(core.phase(), Phase::Running(_)))
                })
                .collect(),
        };
        let names: Vec<&str> = cores.iter().map(|core| core.name()).collect();
        // Siblings are stopped now, newest first, so that they restart together.
        for sibling in cores
            .iter()
            .rev()
            .filter(|core| !Arc::ptr_eq(core, instance))
        {
            let deadline =
                swapvisor_actors::guard::deadline_in(sibling.unit_spec().swap.stop_timeout);
            if let Err(error) = sibling.stop_actor(deadline, Phase::Restarting).await {
                tracing::warn!(plugin = %sibling.name(), %error, "stopping a sibling for restart was not clean");
            }
        }
        for core in &cores {
            core.record()
                .restarts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        // (Already so when the actor reported its own exit; not when it failed outside a call.)
        instance.transition(|p| matches!(p, Phase::Running(_)), Phase::Restarting);
        let delay = restart.backoff().delay(attempt - 1);
        tracing::warn!(plugin = %name, %reason, restarting = ?names, delay_ms = delay.as_millis() as u64, "plugin crashed; restarting");
        let instances: Vec<Weak<InstanceCore>> = cores.iter().map(Arc::downgrade).collect();
        ractor::time::send_after(delay, myself.get_cell(), move || RestartMsg::Restart {
            instances,
        });
    }
}
