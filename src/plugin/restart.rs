//! The restart supervisor: Erlang/OTP restart semantics for a runtime's plugin instances.
//!
//! Every plugin actor is linked to this one actor. When a plugin exits on its own (a panic, a
//! [`PluginError::Crash`](super::PluginError::Crash), or a normal
//! [`PluginError::Exit`](super::PluginError::Exit)), it decides, exactly as an OTP supervisor
//! would:
//!
//! - **restart type** (per instance): `permanent` is always restarted, `transient` only after
//!   an abnormal exit, `temporary` never;
//! - **intensity** (per instance): more than `maxRestarts` restarts within `within` and the
//!   instance is marked failed instead, and the failure is escalated to the runtime's
//!   Supervisor (which may revert a config still on probation);
//! - **strategy** (per runtime): `one_for_one` restarts the instance alone, `one_for_all`
//!   every instance, `rest_for_one` the instance and those started after it; siblings are
//!   stopped gracefully first, in reverse start order, then all restart in start order;
//! - **backoff**: the restart waits `initial * 2^(n-1)` (capped at `max`, ±20% jitter) where
//!   `n` counts this instance's restarts within the intensity window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::Instant;

use super::host::HostShared;
use super::instance::{InstanceCore, Phase, build_plugin};
use crate::config::{RestartPolicy, RestartStrategy};

/// Messages to the restart supervisor.
pub(crate) enum RestartMsg {
    /// From a plugin actor that is exiting on its own.
    Exited {
        instance: Weak<InstanceCore>,
        abnormal: bool,
        reason: String,
    },
    /// From a timer: restart these instances now, in this order. They are the exact instances
    /// the decision was about: one swapped out or stopped meanwhile is left alone.
    Restart { instances: Vec<Weak<InstanceCore>> },
}

pub(crate) struct RestartSupervisor;

pub(crate) struct RestartState {
    host: Weak<HostShared>,
    /// When each instance (by name) was restarted, within its intensity window.
    restarts: HashMap<String, VecDeque<Instant>>,
}

impl Actor for RestartSupervisor {
    type Msg = RestartMsg;
    type State = RestartState;
    type Arguments = Weak<HostShared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RestartMsg>,
        host: Weak<HostShared>,
    ) -> Result<RestartState, ActorProcessingErr> {
        Ok(RestartState {
            host,
            restarts: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RestartMsg>,
        message: RestartMsg,
        state: &mut RestartState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(host) = state.host.upgrade() else {
            return Ok(());
        };
        match message {
            RestartMsg::Exited {
                instance,
                abnormal,
                reason,
            } => {
                let Some(instance) = instance.upgrade() else {
                    return Ok(());
                };
                state
                    .exited(&myself, &host, &instance, abnormal, reason)
                    .await;
            }
            RestartMsg::Restart { instances } => {
                for core in instances.iter().filter_map(Weak::upgrade) {
                    let name = core.name().to_owned();
                    let current = host
                        .current_core(&name)
                        .is_some_and(|live| Arc::ptr_eq(&live, &core));
                    // Reloaded, removed or stopped meanwhile: not ours to restart.
                    if !current || !matches!(*core.phase.borrow(), Phase::Restarting) {
                        continue;
                    }
                    // Bounded, so that one plugin hanging in start cannot hold up every other
                    // plugin's restart behind it in this mailbox.
                    let timeout = core.unit_spec().swap.start_timeout;
                    let restarted = match build_plugin(&core.registry, &core.unit_spec().spec) {
                        Ok(plugin) => {
                            match tokio::time::timeout(timeout, core.spawn_actor(plugin)).await {
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
                        Err(error) if matches!(*core.phase.borrow(), Phase::Restarting) => {
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
        state: &mut RestartState,
    ) -> Result<(), ActorProcessingErr> {
        // The default would stop this supervisor whenever a plugin actor exits.
        let Some(host) = state.host.upgrade() else {
            return Ok(());
        };
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                host.actors.remove(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                // Plugin actors catch their own panics and report them; this is a failure
                // outside a call (a bug in the actor itself). Treat it as a crash.
                tracing::warn!(actor = %cell.get_id(), %error, "a plugin actor failed outside a call");
                if let Some((_, instance)) = host.actors.remove(&cell.get_id())
                    && let Some(instance) = instance.upgrade()
                {
                    instance.record_error(&error.to_string());
                    state
                        .exited(&myself, &host, &instance, true, error.to_string())
                        .await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl RestartState {
    async fn exited(
        &mut self,
        myself: &ActorRef<RestartMsg>,
        host: &Arc<HostShared>,
        instance: &Arc<InstanceCore>,
        abnormal: bool,
        reason: String,
    ) {
        let name = instance.name().to_owned();
        // Only the instance the slot publishes now is restarted; an old one being swapped out
        // is finished with.
        if !host
            .current_core(&name)
            .is_some_and(|current| Arc::ptr_eq(&current, instance))
        {
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
            host.escalate(escalation);
            return;
        }
        log.push_back(now);
        let attempt = log.len() as u32;
        let names = self.restart_set(host, &name);
        // The exact instances to restart, decided now: the crashed one, and the siblings the
        // strategy takes along that are serving (a failed or stopped sibling, or a temporary
        // one, stays as it is).
        let cores: Vec<Arc<InstanceCore>> = names
            .iter()
            .filter_map(|n| {
                if *n == name {
                    Some(instance.clone())
                } else {
                    host.current_core(n)
                }
            })
            .filter(|core| {
                Arc::ptr_eq(core, instance)
                    || (core.unit_spec().restart.policy != RestartPolicy::Temporary
                        && matches!(*core.phase.borrow(), Phase::Running(_)))
            })
            .collect();
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
            core.record
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

    /// The instances to restart with `name`, in start order.
    fn restart_set(&self, host: &HostShared, name: &str) -> Vec<String> {
        let order = host.start_order();
        match host.strategy() {
            RestartStrategy::OneForOne => vec![name.to_owned()],
            RestartStrategy::OneForAll => order,
            RestartStrategy::RestForOne => {
                let from = order.iter().position(|n| n == name).unwrap_or(0);
                order[from..].to_vec()
            }
        }
    }
}
