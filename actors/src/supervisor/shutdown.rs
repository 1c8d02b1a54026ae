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
use super::state::SupervisorState;
use crate::active::ActiveMsg;
use crate::outcome::ReloadOutcome;
use crate::unit::{BuildFailure, Stage, Unit};

impl<U: Unit> SupervisorState<U> {
    pub(super) fn begin_shutdown(
        &mut self,
        reply: RpcReplyPort<()>,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        if let Some(waiting) = &mut self.shutdown {
            // Already shutting down: this caller is answered when the first one is.
            waiting.push(reply);
            return;
        }
        self.shutdown = Some(vec![reply]);
        if let Some(timer) = self.restore_timer.take() {
            timer.abort();
        }
        // Held units were built without outside effects: dropping them is their teardown.
        self.drop_prepared();
        let queued: Vec<_> = self.queue.drain(..).collect();
        for queued in queued {
            self.answer_unstarted(queued, ReloadOutcome::Superseded);
        }
        if let Some(current) = self.current.as_ref().filter(|c| !c.swapping) {
            if let Some(candidate) = self.candidates.remove(&current.id) {
                candidate.abort();
            }
            if let Some(current) = self.current.take() {
                let mut record = current.record;
                record.outcome = ReloadOutcome::Superseded;
                self.remember(&record);
                if let Some(reply) = current.reply {
                    let _ = reply.send(record);
                }
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
        for (_, reply) in self.probes.drain() {
            let _ = reply.send(Err(BuildFailure::new(
                Stage::Build,
                "the runtime is shutting down",
            )));
        }
        for reply in self.shutdown.take().into_iter().flatten() {
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
}
