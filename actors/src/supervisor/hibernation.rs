//! Hibernation: an idle Supervisor exits and leaves behind what a later one needs.
//!
//! A slot whose unit rarely reloads (a plugin instance) does not need its Supervisor and Active
//! between reloads: the live unit stays published in the slot and serves on its own. So an idle
//! Supervisor can hand back a [`Resume`] snapshot (generation, last-known-good and revert specs,
//! history) and exit with its Active, which leaves the live unit running. A new Supervisor
//! spawned with that snapshot carries on where the old one left off.
//! [`HibernatingSupervisor`](crate::HibernatingSupervisor) does this around each reload.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use super::SupervisorMsg;
use super::lineage::Lineage;
use super::phase::Phase;
use super::state::SupervisorState;
use crate::active::ActiveMsg;
use crate::outcome::ReloadRecord;
use crate::unit::Unit;

/// A hibernated Supervisor's state: enough for a new Supervisor to carry on where it left off.
pub struct Resume<U: Unit> {
    /// The generation, the last-known-good and revert specs, and the probation window (which
    /// outlives hibernation: the escalation that ends it wakes the Supervisor).
    lineage: Lineage<U>,
    history: VecDeque<ReloadRecord>,
    next_id: u64,
}

impl<U: Unit> Resume<U> {
    /// Where a Supervisor with no past begins.
    pub(super) fn fresh(build_timeout: Duration) -> Self {
        Self {
            lineage: Lineage::fresh(build_timeout),
            history: VecDeque::new(),
            next_id: 1,
        }
    }

    /// What a new Supervisor carries on with: the lineage, the history and the next request id.
    pub(super) fn into_parts(self) -> (Lineage<U>, VecDeque<ReloadRecord>, u64) {
        (self.lineage, self.history, self.next_id)
    }

    /// The generation the slot was at.
    pub fn generation(&self) -> u64 {
        self.lineage.generation()
    }

    /// True within the probation window of the latest activation.
    pub fn on_probation(&self) -> bool {
        self.lineage.on_probation()
    }

    /// The most recent reload.
    pub fn last_reload(&self) -> Option<&ReloadRecord> {
        self.history.back()
    }
}

impl<U: Unit> fmt::Debug for Resume<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resume")
            .field("lineage", &self.lineage)
            .field("history", &self.history)
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl<U: Unit> SupervisorState<U> {
    /// Nothing under way, queued, pending or degraded: the Supervisor may go.
    fn is_idle(&self) -> bool {
        self.phase.is_idle()
            && self.queue.is_empty()
            && !self.candidates.has_probes()
            && self.prepares.is_empty()
            && !self.recovery.is_degraded()
    }

    /// Answers a hibernation request: with the snapshot when idle (and then the Supervisor
    /// stops, its Active having exited without touching the live unit), else with `None`.
    pub(super) async fn hibernate(
        &mut self,
        reply: RpcReplyPort<Option<Resume<U>>>,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        if !self.is_idle() {
            let _ = reply.send(None);
            return;
        }
        // The Active leaves the live unit published and running; it only finishes retiring
        // the units it replaced.
        let _ = ractor::call!(self.active, ActiveMsg::Detach);
        let resume = Resume {
            lineage: self.lineage.hand_on(),
            history: self.history.hand_on(),
            next_id: self.next_id,
        };
        self.phase = Phase::Hibernating;
        let _ = reply.send(Some(resume));
        myself.stop(None);
    }
}
