//! Hibernation: an idle Supervisor exits and leaves behind what a later one needs.
//!
//! A slot whose unit rarely reloads (a plugin instance) does not need its Supervisor and Active
//! between reloads: the live unit stays published in the slot and serves on its own. So an idle
//! Supervisor can hand back a [`Resume`] snapshot (generation, last-known-good and revert specs,
//! history) and exit with its Active, which leaves the live unit running. A new Supervisor
//! spawned with that snapshot carries on where the old one left off.
//! [`HibernatingSupervisor`](crate::HibernatingSupervisor) does this around each reload.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use super::SupervisorMsg;
use super::state::SupervisorState;
use crate::active::ActiveMsg;
use crate::outcome::ReloadRecord;
use crate::unit::Unit;

/// A hibernated Supervisor's state: enough for a new Supervisor to carry on where it left off.
pub struct Resume<U: Unit> {
    pub(super) generation: u64,
    pub(super) known_good: Option<Arc<U::Spec>>,
    pub(super) previous_good: Option<Arc<U::Spec>>,
    /// A probation window outlives hibernation: the escalation that ends it wakes the
    /// Supervisor.
    pub(super) probation_until: Option<tokio::time::Instant>,
    pub(super) fingerprint: Option<String>,
    pub(super) build_timeout: Duration,
    pub(super) history: VecDeque<ReloadRecord>,
    pub(super) next_id: u64,
}

impl<U: Unit> Resume<U> {
    /// Where a Supervisor with no past begins.
    pub(super) fn fresh(build_timeout: Duration) -> Self {
        Self {
            generation: 0,
            known_good: None,
            previous_good: None,
            probation_until: None,
            fingerprint: None,
            build_timeout,
            history: VecDeque::new(),
            next_id: 1,
        }
    }

    /// The generation the slot was at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True within the probation window of the latest activation.
    pub fn on_probation(&self) -> bool {
        self.probation_until
            .is_some_and(|until| tokio::time::Instant::now() <= until)
    }

    /// The most recent reload.
    pub fn last_reload(&self) -> Option<&ReloadRecord> {
        self.history.back()
    }
}

impl<U: Unit> SupervisorState<U> {
    /// Nothing under way, queued, pending or degraded: the Supervisor may go.
    fn is_idle(&self) -> bool {
        self.current.is_none()
            && self.queue.is_empty()
            && self.probes.is_empty()
            && self.preparing.is_empty()
            && self.prepared.is_empty()
            && !self.degraded
            && self.shutdown.is_none()
            && self.restore_timer.is_none()
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
            generation: self.generation,
            known_good: self.known_good.take(),
            previous_good: self.previous_good.take(),
            probation_until: self.probation_until.take(),
            fingerprint: self.fingerprint.take(),
            build_timeout: self.build_timeout,
            history: {
                // A deque keeps room for four records from its first; a slot that sleeps
                // (thousands of idle plugins) keeps only what it holds.
                let mut history = std::mem::take(&mut self.history);
                history.shrink_to_fit();
                history
            },
            next_id: self.next_id,
        };
        self.shutdown = Some(Vec::new());
        let _ = reply.send(Some(resume));
        myself.stop(None);
    }
}
