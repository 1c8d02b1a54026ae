//! What the Supervisor shows of itself: where the slot is in its life, and its history.

use ractor::ActorRef;
use serde::Serialize;

use super::SupervisorMsg;
use super::state::SupervisorState;
use crate::outcome::{Origin, ReloadRecord};
use crate::unit::Unit;

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RunState {
    /// Nothing has been activated yet.
    Starting,
    /// A unit serves and no reload is under way.
    Running,
    /// A reload is under way; the previous unit serves meanwhile (start-first).
    Reloading,
    /// Nothing serves after a failed stop-first swap; restores are being retried.
    Degraded,
    /// Shutting down.
    Stopping,
}

/// A snapshot of a Supervisor, as [`SupervisorMsg::Status`] answers it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorStatus {
    /// Where the slot is in its life.
    pub state: RunState,
    /// The current generation: how many reloads have activated (0 before the first).
    pub generation: u64,
    /// The fingerprint of the current generation's spec.
    pub fingerprint: Option<String>,
    /// The most recent reload.
    pub last_reload: Option<ReloadRecord>,
    /// The most recent reloads, oldest first.
    pub history: Vec<ReloadRecord>,
    /// Requests waiting for their turn.
    pub queued: usize,
    /// What the Supervisor runs now: its Active (a linked actor), plus each Candidate (a task)
    /// still building.
    pub child_actors: usize,
    /// Units built by a prepare and held for their commit (the first phase of a fleet reload).
    pub prepared: usize,
    /// Failed restore attempts since the slot became degraded.
    pub restore_attempts: u32,
    /// Escalations received (crash loops below the live unit).
    pub escalations: u32,
    /// The most recent escalation's reason.
    pub last_escalation: Option<String>,
    /// True within the probation window of the latest activation: an escalation now reverts.
    pub on_probation: bool,
    /// How replaced units retired: drains past their deadline and failed stops.
    pub retirements: crate::retirement::RetirementStatus,
}

impl<U: Unit> SupervisorState<U> {
    /// The state a caller sees: a restore in progress still counts as degraded, a reload as
    /// reloading (or starting, before the first activation).
    fn run_state(&self) -> RunState {
        let restoring = |origin: Origin| origin == Origin::Restore;
        let current = self.phase.current();
        if self.phase.is_leaving() {
            RunState::Stopping
        } else if self.recovery.is_degraded() && current.is_none_or(|c| restoring(c.origin())) {
            RunState::Degraded
        } else if self.lineage.generation() == 0 {
            RunState::Starting
        } else if current.is_some_and(|c| !restoring(c.origin())) {
            RunState::Reloading
        } else {
            RunState::Running
        }
    }

    pub(super) fn status(&self, myself: &ActorRef<SupervisorMsg<U>>) -> SupervisorStatus {
        SupervisorStatus {
            state: self.run_state(),
            generation: self.lineage.generation(),
            fingerprint: self.lineage.fingerprint(),
            last_reload: self.history.last().cloned(),
            history: self.history.records(),
            queued: self.queue.len(),
            child_actors: myself.get_children().len() + self.candidates.building(),
            prepared: self.prepares.held(),
            restore_attempts: self.recovery.attempts(),
            escalations: self.recovery.escalations(),
            last_escalation: self.recovery.last_escalation(),
            on_probation: self.lineage.on_probation(),
            retirements: self.slot.retirements(),
        }
    }
}
