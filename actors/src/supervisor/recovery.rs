//! Recovery: restoring a degraded slot, and reverting a generation on probation.
//!
//! - **Restore.** A stop-first swap whose new unit failed to start, and whose previous unit
//!   could not be started again either, leaves the slot *degraded*: nothing serves. The
//!   Supervisor then rebuilds and starts the last-known-good spec itself (origin `Restore`),
//!   waiting longer after each failure ([`Backoff`]), until a restore or a newer reload
//!   succeeds. A restore keeps the generation (`Restored`). [`Health`] is either serving or
//!   degraded, and only a degraded slot counts failed attempts or arms a restore timer.
//! - **Probation.** After an activation whose unit has a probation window, an escalation (a
//!   crash loop below the live unit) puts the previous spec back (origin `Revert`, outcome
//!   `Reverted`), ahead of anything queued. Outside the window an escalation is only recorded.

use std::fmt;

use ractor::ActorRef;

use super::SupervisorMsg;
use super::messages::{InternalMsg, ReloadRequest};
use super::queue::Queued;
use super::state::SupervisorState;
use crate::backoff::Backoff;
use crate::outcome::Origin;
use crate::unit::Unit;

/// The pending restore timer: aborting the handle cancels the timer itself.
type RestoreTimer<U> = tokio::task::JoinHandle<Result<(), ractor::MessagingErr<SupervisorMsg<U>>>>;

/// Whether anything serves.
enum Health<U: Unit> {
    /// A unit serves (or none has been activated yet).
    Serving,
    /// Nothing serves after a failed swap; restores are retried.
    Degraded {
        /// Failed restore attempts so far.
        attempts: u32,
        /// Armed until the next attempt is due.
        timer: Option<RestoreTimer<U>>,
    },
}

/// The slot's health, its restore backoff, and the escalations it was told of.
pub(super) struct Recovery<U: Unit> {
    health: Health<U>,
    backoff: Backoff,
    escalations: u32,
    last_escalation: Option<String>,
}

impl<U: Unit> Recovery<U> {
    /// A serving slot whose restores, once degraded, wait as `backoff` says.
    pub(super) fn new(backoff: Backoff) -> Self {
        Self {
            health: Health::Serving,
            backoff,
            escalations: 0,
            last_escalation: None,
        }
    }

    pub(super) fn is_degraded(&self) -> bool {
        matches!(self.health, Health::Degraded { .. })
    }

    /// Nothing serves: from now on restores are retried (a slot degraded already stays as it
    /// is, attempts and timer).
    pub(super) fn degrade(&mut self) {
        if let Health::Serving = self.health {
            self.health = Health::Degraded {
                attempts: 0,
                timer: None,
            };
        }
    }

    /// Something serves again: cancel any pending restore and forget the attempts.
    pub(super) fn recovered(&mut self) {
        self.cancel_timer();
        self.health = Health::Serving;
    }

    /// Failed restore attempts since the slot became degraded.
    pub(super) fn attempts(&self) -> u32 {
        match self.health {
            Health::Degraded { attempts, .. } => attempts,
            Health::Serving => 0,
        }
    }

    /// True when degraded and no restore timer is armed: the next attempt may begin.
    fn restore_due(&self) -> bool {
        matches!(self.health, Health::Degraded { timer: None, .. })
    }

    /// The restore timer fired: the backoff has passed.
    pub(super) fn timer_fired(&mut self) {
        if let Health::Degraded { timer, .. } = &mut self.health {
            *timer = None;
        }
    }

    /// Aborts a pending restore timer (the Supervisor is leaving, or something serves).
    pub(super) fn cancel_timer(&mut self) {
        if let Health::Degraded { timer, .. } = &mut self.health {
            if let Some(timer) = timer.take() {
                timer.abort();
            }
        }
    }

    /// Counts an escalation.
    fn escalated(&mut self, reason: String) {
        self.escalations += 1;
        self.last_escalation = Some(reason);
    }

    /// Escalations received (crash loops below the live unit).
    pub(super) fn escalations(&self) -> u32 {
        self.escalations
    }

    /// The most recent escalation's reason.
    pub(super) fn last_escalation(&self) -> Option<String> {
        self.last_escalation.clone()
    }
}

impl<U: Unit> fmt::Debug for Recovery<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Recovery");
        match &self.health {
            Health::Serving => f.field("health", &"serving"),
            Health::Degraded { attempts, timer } => f
                .field("health", &"degraded")
                .field("attempts", attempts)
                .field("timer_armed", &timer.is_some()),
        };
        f.field("backoff", &self.backoff)
            .field("escalations", &self.escalations)
            .field("last_escalation", &self.last_escalation)
            .finish()
    }
}

impl<U: Unit> SupervisorState<U> {
    /// A restore failed (to build or to start): count it and try again after the backoff.
    pub(super) fn restore_failed(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        self.phase.end();
        if let Health::Degraded { attempts, .. } = &mut self.recovery.health {
            *attempts += 1;
        }
        self.schedule_restore(myself);
    }

    /// Arms the restore timer for the next attempt, unless the slot serves, one is armed, the
    /// Supervisor is leaving, or there is nothing to restore.
    pub(super) fn schedule_restore(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        if !self.recovery.restore_due()
            || self.phase.is_leaving()
            || self.lineage.known_good().is_none()
        {
            return;
        }
        let attempts = self.recovery.attempts();
        let delay = self.recovery.backoff.delay(attempts);
        tracing::info!(unit = %self.unit_name, attempt = attempts + 1, delay_ms = delay.as_millis() as u64, "scheduling a restore of the last-known-good spec");
        let armed = ractor::time::send_after(delay, myself.get_cell(), || {
            SupervisorMsg::<U>::internal(InternalMsg::RetryRestore)
        });
        if let Health::Degraded { timer, .. } = &mut self.recovery.health {
            *timer = Some(armed);
        }
    }

    /// Begins a restore if the slot is degraded and the backoff has passed.
    pub(super) async fn start_restore_if_due(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        if !self.recovery.restore_due() {
            return;
        }
        if let Some(spec) = self.lineage.known_good() {
            let id = self.take_id();
            self.begin(myself, id, Origin::Restore, spec, None, None)
                .await;
        }
    }

    /// A crash loop below the live unit: revert within the probation window, else record it.
    pub(super) fn escalate(&mut self, reason: String) {
        self.recovery.escalated(reason.clone());
        let revert = if self.phase.is_leaving() {
            None
        } else {
            self.lineage.revert_target()
        };
        match revert {
            Some(spec) => {
                tracing::warn!(unit = %self.unit_name, %reason, "escalation during probation: reverting to the previous spec");
                let id = self.take_id();
                // Expecting the current generation: if a newer reload activates before the
                // revert's turn, the escalation was about a config that is gone (`Conflict`).
                let request = ReloadRequest {
                    spec,
                    expected_generation: Some(self.lineage.generation()),
                    origin: Origin::Revert,
                };
                // A revert goes before anything queued: the live unit is known to be failing.
                self.queue
                    .push_front(Queued::new(id, request, None).because(reason));
            }
            None => {
                tracing::warn!(unit = %self.unit_name, %reason, "escalation outside probation: recorded, nothing reverted")
            }
        }
    }

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
        if self.lineage.generation() > 0 && self.slot.current_live().is_none() {
            self.recovery.degrade();
            self.slot.mark_down();
            self.schedule_restore(myself);
        }
    }

    /// Ends a swap the Active can no longer report on as `RolledBack`.
    pub(super) fn interrupt_swap(&mut self, reason: &str, myself: &ActorRef<SupervisorMsg<U>>) {
        if self.phase.is_swapping() {
            let error = format!("the {} swap was interrupted: {reason}", self.unit_name);
            self.finish(crate::outcome::ReloadOutcome::RolledBack { error }, myself);
        }
    }
}
