//! Shutdown: answer what waits, stop the live unit gracefully, exit.
//!
//! Queued requests are answered `Superseded`, a build under way is abandoned (its Candidate
//! aborted), and a swap under way finishes first: the Active takes its messages in order, so
//! its `Shutdown` comes after the swap, which is answered truthfully. The Active then closes
//! the slot, drains and stops the live unit and every retiring one, and reports
//! `ActiveStopped`; only then is the caller answered.

use ractor::{ActorRef, RpcReplyPort};

use super::SupervisorMsg;
use super::messages::InternalMsg;
use super::phase::Phase;
use super::state::SupervisorState;
use crate::active::ActiveMsg;
use crate::outcome::ReloadOutcome;
use crate::unit::{BuildFailure, Stage, Unit};

/// What a try-activate or prepare that can no longer be built is told.
pub(super) fn shutting_down() -> BuildFailure {
    BuildFailure::new(Stage::Build, "the runtime is shutting down")
}

impl<U: Unit> SupervisorState<U> {
    pub(super) fn begin_shutdown(
        &mut self,
        reply: RpcReplyPort<()>,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        let (building, swap) = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::ShuttingDown { mut callers, swap } => {
                // Already shutting down: this caller is answered when the first one is.
                callers.push(reply);
                self.phase = Phase::ShuttingDown { callers, swap };
                return;
            }
            Phase::Hibernating => {
                // Exiting already, with the live unit left running for a later Supervisor:
                // the caller hears that this one is gone.
                self.phase = Phase::Hibernating;
                return;
            }
            Phase::Idle => (None, None),
            Phase::Building(current) => (Some(current), None),
            Phase::Swapping(current) => (None, Some(current)),
        };
        self.phase = Phase::ShuttingDown {
            callers: vec![reply],
            swap,
        };
        self.recovery.cancel_timer();
        // Held units were built without outside effects: dropping them is their teardown.
        self.prepares.drop_all();
        for queued in self.queue.take_all() {
            self.answer_unstarted(queued, ReloadOutcome::Superseded);
        }
        if let Some(current) = building {
            self.candidates.cancel(current.id());
            let (record, reply) = current.superseded();
            self.history.remember(&record);
            if let Some(reply) = reply {
                let _ = reply.send(record);
            }
        }
        if self.active.send_message(ActiveMsg::Shutdown).is_err() {
            // No Active to stop anything: nothing is left to wait for.
            let _ = myself.send_message(SupervisorMsg::internal(InternalMsg::ActiveStopped));
        }
    }

    /// The Active stopped everything: answer the try-activates still waiting and every
    /// shutdown caller, and exit.
    pub(super) fn active_stopped(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        self.candidates.fail_probes();
        for reply in self.phase.take_callers() {
            let _ = reply.send(());
        }
        myself.stop(None);
    }

    /// The Active died during a shutdown instead of reporting: answer what waits on it.
    pub(super) fn active_failed_in_shutdown(
        &mut self,
        reason: &str,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        tracing::error!(unit = %self.unit_name, %reason, "the Active actor failed during shutdown");
        self.interrupt_swap(reason, myself);
        let _ = myself.send_message(SupervisorMsg::internal(InternalMsg::ActiveStopped));
    }

    /// Drops what no later message will reach (the Supervisor has stopped): the restore timer,
    /// every build, and every prepared unit. Try-activates were answered at shutdown.
    pub(super) fn abandon(&mut self) {
        self.recovery.cancel_timer();
        self.candidates.cancel_all();
        self.prepares.drop_all();
    }
}
