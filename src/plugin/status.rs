//! A plugin instance as status shows it.

use serde::Serialize;

use super::checkpoint::CheckpointStatus;
use super::core::Phase;
use super::history::PluginReload;

/// Where a plugin instance is, as shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub enum PluginState {
    /// Being started or swapped.
    Starting,
    /// Serving calls.
    Running,
    /// Crashed; a restart is scheduled.
    Restarting,
    /// Crashed beyond its restart intensity (or not restarted by its policy).
    Failed,
    /// Stopped on purpose (or exited normally, and not restarted by its policy).
    Stopped,
}

impl PluginState {
    /// Every state, in the order declared.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) const ALL: [PluginState; 5] = [
        PluginState::Starting,
        PluginState::Running,
        PluginState::Restarting,
        PluginState::Failed,
        PluginState::Stopped,
    ];

    /// Its name, as status shows it (`running`, ...): the `state` label of `/metrics`.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn name(self) -> &'static str {
        match self {
            PluginState::Starting => "starting",
            PluginState::Running => "running",
            PluginState::Restarting => "restarting",
            PluginState::Failed => "failed",
            PluginState::Stopped => "stopped",
        }
    }

    pub(super) fn of(phase: &Phase) -> Self {
        match phase {
            Phase::Idle | Phase::Starting => PluginState::Starting,
            Phase::Running(_) => PluginState::Running,
            Phase::Restarting => PluginState::Restarting,
            Phase::Failed(_) => PluginState::Failed,
            Phase::Stopped => PluginState::Stopped,
        }
    }
}

/// One plugin instance as shown in status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct PluginStatus {
    /// The instance's name.
    pub name: String,
    /// Its plugin kind.
    pub kind: String,
    /// The plugin's version.
    pub version: String,
    /// Where it is.
    pub state: PluginState,
    /// How many times its slot has been activated (1, plus one per reload).
    pub generation: u64,
    /// How many times it was restarted after a crash (its own or a sibling's, per strategy).
    pub restarts: u32,
    /// Its most recent error (a crash, a failed start or restart), kept once it is past.
    pub last_error: Option<String>,
    /// When that error happened, RFC 3339.
    pub last_error_at: Option<String>,
    /// Whether an instance has started and served since that error: `true` once the plugin
    /// recovered (a restart or a reload that serves), so an old crash does not read as now.
    pub last_error_past: bool,
    /// How many times its crashes went past its restart intensity (escalated to its own
    /// Supervisor on probation, or to the engine's), counted in every case.
    pub escalations: u32,
    /// The latest escalation's reason.
    pub last_escalation: Option<String>,
    /// The identity of the code it runs: a process plugin's executable SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The operating-system process serving it (a process plugin), while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its checkpoints: the latest kept, the latest on disk, what the running instance
    /// imported. Absent for a plugin that never took one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointStatus>,
    /// The restart group that governs its crashes: the live engine's (the oldest attached
    /// config holding it), with its strategy and members in config order. Absent while no
    /// engine holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_group: Option<RestartGroupStatus>,
    /// Its latest reload (the first activation, until another), with its outcome.
    pub last_reload: Option<PluginReload>,
    /// How many of its reloads ended in each outcome (`activated`, `rejected`, ...).
    pub reloads: std::collections::BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::PluginState;

    #[test]
    fn each_state_is_named_as_status_shows_it() {
        for state in PluginState::ALL {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.name())
            );
        }
    }
}

/// A restart group as a plugin's status shows it.
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartGroupStatus {
    /// Which siblings restart with a crashed instance: `one_for_one`, `one_for_all` or
    /// `rest_for_one` (the engine config's `runtime.plugins.strategy`).
    pub strategy: crate::config::RestartStrategy,
    /// The group's instances, in config order.
    pub members: Vec<String>,
}
