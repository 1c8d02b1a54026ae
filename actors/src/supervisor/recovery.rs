//! Recovery: restoring a degraded slot, and reverting a generation on probation.
//!
//! - **Restore.** A stop-first swap whose new unit failed to start, and whose previous unit
//!   could not be started again either, leaves the slot *degraded*: nothing serves. The
//!   Supervisor then rebuilds and starts the last-known-good spec itself (origin `Restore`),
//!   waiting longer after each failure ([`Backoff`](crate::Backoff)), until a restore or a
//!   newer reload succeeds. A restore keeps the generation (`Restored`).
//! - **Probation.** After an activation whose unit has a probation window, an escalation (a
//!   crash loop below the live unit) puts the previous spec back (origin `Revert`, outcome
//!   `Reverted`), ahead of anything queued. Outside the window an escalation is only recorded.

use ractor::ActorRef;
use tokio::time::Instant;

use super::SupervisorMsg;
use super::messages::{InternalMsg, ReloadRequest};
use super::state::{Queued, SupervisorState};
use crate::outcome::Origin;
use crate::unit::Unit;

impl<U: Unit> SupervisorState<U> {
    /// A restore failed (to build or to start): count it and try again after the backoff.
    pub(super) fn restore_failed(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        self.current = None;
        self.restore_attempts += 1;
        self.schedule_restore(myself);
    }

    /// Something serves again: leave the degraded state and cancel any pending restore.
    pub(super) fn recovered(&mut self) {
        self.degraded = false;
        self.restore_attempts = 0;
        if let Some(timer) = self.restore_timer.take() {
            timer.abort();
        }
    }

    /// Arms the restore timer for the next attempt, unless one is armed, the Supervisor is
    /// leaving, or there is nothing to restore.
    pub(super) fn schedule_restore(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        if self.restore_timer.is_some() || self.shutdown.is_some() || self.known_good.is_none() {
            return;
        }
        let delay = self.restore_backoff.delay(self.restore_attempts);
        tracing::info!(unit = %self.unit_name, attempt = self.restore_attempts + 1, delay_ms = delay.as_millis() as u64, "scheduling a restore of the last-known-good spec");
        self.restore_timer = Some(ractor::time::send_after(delay, myself.get_cell(), || {
            SupervisorMsg::<U>::internal(InternalMsg::RetryRestore)
        }));
    }

    /// Begins a restore if the slot is degraded and the backoff has passed.
    pub(super) async fn start_restore_if_due(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        if !self.degraded || self.restore_timer.is_some() {
            return;
        }
        if let Some(spec) = self.known_good.clone() {
            let id = self.take_id();
            self.begin(myself, id, Origin::Restore, spec, None, None)
                .await;
        }
    }

    /// True within the probation window of the latest activation.
    pub(super) fn on_probation(&self) -> bool {
        self.probation_until
            .is_some_and(|until| Instant::now() <= until)
    }

    /// A crash loop below the live unit: revert within the probation window, else record it.
    pub(super) fn escalate(&mut self, reason: String) {
        self.escalations += 1;
        self.last_escalation = Some(reason.clone());
        let in_probation = self.on_probation();
        match self.previous_good.clone() {
            Some(spec) if in_probation && self.shutdown.is_none() => {
                tracing::warn!(unit = %self.unit_name, %reason, "escalation during probation: reverting to the previous spec");
                self.probation_until = None;
                let id = self.take_id();
                // Expecting the current generation: if a newer reload activates before the
                // revert's turn, the escalation was about a config that is gone (`Conflict`).
                let request = ReloadRequest {
                    spec,
                    expected_generation: Some(self.generation),
                    origin: Origin::Revert,
                };
                // A revert goes before anything queued: the live unit is known to be failing.
                self.queue.push_front(Queued {
                    id,
                    request,
                    reply: None,
                    reason: Some(reason),
                    prebuilt: None,
                });
            }
            _ => {
                tracing::warn!(unit = %self.unit_name, %reason, "escalation outside probation: recorded, nothing reverted")
            }
        }
    }
}

impl<U: Unit> SupervisorState<U> {
    /// The Active exited outside a shutdown: a new one takes over the live unit. A swap it was
    /// carrying out ends `RolledBack`; if it died with nothing published (in the middle of a
    /// stop-first swap) the slot is degraded, so callers fail fast and restores begin.
    pub(super) async fn active_exited(
        &mut self,
        reason: &str,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        tracing::error!(unit = %self.unit_name, %reason, "the Active actor exited; starting a new one over the live unit");
        match super::spawn_active(myself, &self.slot, &self.unit_name).await {
            Ok(active) => self.active = active,
            Err(error) => tracing::error!(%error, "cannot restart the Active actor"),
        }
        self.interrupt_swap(reason, myself);
        if self.generation > 0 && self.slot.current_live().is_none() {
            self.degraded = true;
            self.slot.mark_down();
            self.schedule_restore(myself);
        }
    }

    /// Ends a swap the Active can no longer report on as `RolledBack`.
    pub(super) fn interrupt_swap(&mut self, reason: &str, myself: &ActorRef<SupervisorMsg<U>>) {
        if self.current.as_ref().is_some_and(|c| c.swapping) {
            let error = format!("the {} swap was interrupted: {reason}", self.unit_name);
            self.finish(crate::outcome::ReloadOutcome::RolledBack { error }, myself);
        }
    }
}
