//! [`RuntimeStatus`]: the runtime as status shows it (and the admin API serves it).

use serde::Serialize;
use swapvisor_actors::{ReloadRecord, RetirementStatus, RunState, Slot, SupervisorStatus};

use crate::engine::{Engine, EngineContext, ModuleStatus};
use crate::plugin::PluginStatus;

/// The runtime as shown in status (and by the admin API).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct RuntimeStatus {
    /// `starting`, `running`, `reloading`, `degraded` or `stopping`.
    pub state: RunState,
    /// True while an engine serves requests: false before the first one starts, in a
    /// stop-first swap's gap, degraded, and once stopping. What `/readyz` reports.
    pub serving: bool,
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
    /// Configs built by a prepare and held for their commit (a fleet reload's first phase).
    pub prepared: usize,
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
    /// How replaced engines retired: drains past their deadline and failed stops, each with
    /// the time its retirement took.
    pub retirements: RetirementStatus,
}

impl RuntimeStatus {
    pub(super) fn new(
        supervisor: SupervisorStatus,
        slot: &Slot<Engine>,
        context: &EngineContext,
    ) -> Self {
        let live = slot.current();
        Self {
            serving: live.is_some(),
            state: supervisor.state,
            generation: supervisor.generation,
            config_hash: supervisor.fingerprint,
            mode: live
                .as_ref()
                .map(|e| e.resolved().settings.reload.mode.as_str()),
            last_reload: supervisor.last_reload,
            history: supervisor.history,
            modules: live.as_ref().map(|e| e.module_status()).unwrap_or_default(),
            plugins: context.plugins().status(),
            running_engines: context.census().running(),
            listeners: context.listeners().addresses().len(),
            escalations: supervisor.escalations,
            last_escalation: supervisor.last_escalation,
            retirements: supervisor.retirements,
            in_flight: slot.current_in_flight(),
            queued_reloads: supervisor.queued,
            child_actors: supervisor.child_actors,
            prepared: supervisor.prepared,
            restore_attempts: supervisor.restore_attempts,
        }
    }

    /// The addresses the live engine's servers listen on, as `(module name, address)`: the
    /// real port where the config asked for port 0.
    pub fn listening(&self) -> Vec<(String, String)> {
        crate::engine::listening(&self.modules)
    }
}
