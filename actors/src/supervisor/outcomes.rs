//! Outcomes: turning what the Active reports into exactly one [`ReloadOutcome`] per request,
//! and keeping the books (generation, last-known-good spec, history, observer).

use ractor::ActorRef;

use super::SupervisorMsg;
use super::messages::{SwapReport, SwapResult};
use super::state::{InProgress, SupervisorState};
use crate::outcome::{Origin, ReloadOutcome, ReloadRecord, StageTimings};
use crate::unit::Unit;

impl<U: Unit> SupervisorState<U> {
    /// The Active finished the current request's swap.
    pub(super) fn swap_finished(
        &mut self,
        report: SwapReport<U>,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        let Some(current) = self.current.as_mut().filter(|c| c.id == report.request) else {
            return;
        };
        let build = current.record.timings.build;
        current.record.timings = StageTimings {
            build,
            ..report.timings
        };
        let restoring = current.origin == Origin::Restore;
        let reverting = current.origin == Origin::Revert;
        let outcome = match report.result {
            SwapResult::Activated => {
                if reverting {
                    // The reverted-from spec is not a revert target, and a revert starts no
                    // probation of its own.
                    self.previous_good = None;
                    self.probation_until = None;
                } else if !restoring {
                    self.previous_good = self.known_good.take();
                    self.probation_until = report.settings.probation.map(crate::guard::deadline_in);
                }
                self.known_good = Some(report.spec);
                self.fingerprint = current.record.fingerprint.clone();
                self.live_identity = current.identity.clone();
                self.build_timeout = report.settings.build_timeout;
                let reason = current.reason.clone().unwrap_or_default();
                self.recovered();
                if restoring {
                    ReloadOutcome::Restored {
                        generation: self.generation,
                    }
                } else if reverting {
                    self.generation += 1;
                    ReloadOutcome::Reverted { reason }
                } else {
                    self.generation += 1;
                    ReloadOutcome::Activated {
                        generation: self.generation,
                    }
                }
            }
            // A restore that fails to start is neither answered nor recorded: it is retried
            // after the backoff. A start-first swap reports it as rolled back (to nothing), a
            // stop-first one as degraded; both are the same failure. (Taking the first for a
            // finished reload retried it every 100 ms without backing off, and pushed the
            // degradation out of the history with `rolled_back` records.)
            SwapResult::RolledBack(error) | SwapResult::Degraded { error, .. } if restoring => {
                self.degraded = true;
                tracing::warn!(unit = %self.unit_name, %error, "restore failed to start; retrying later");
                self.restore_failed(myself);
                return;
            }
            SwapResult::RolledBack(error) => ReloadOutcome::RolledBack { error },
            SwapResult::Degraded {
                error,
                restore_error,
            } => {
                self.degraded = true;
                ReloadOutcome::Degraded {
                    error,
                    restore_error,
                }
            }
        };
        self.finish(outcome, myself);
    }

    /// Records the outcome of the current request, answers it, and schedules a restore if the
    /// slot is degraded. The next request is taken up by the caller's `pump`.
    pub(super) fn finish(&mut self, outcome: ReloadOutcome, myself: &ActorRef<SupervisorMsg<U>>) {
        let Some(current) = self.current.take() else {
            return;
        };
        let InProgress {
            mut record,
            span,
            reply,
            started,
            ..
        } = current;
        record.outcome = outcome;
        record.generation = self.generation;
        record.timings.total = Some(started.elapsed());
        span.record("outcome", record.outcome.name());
        match &record.outcome {
            ReloadOutcome::Activated { .. }
            | ReloadOutcome::Restored { .. }
            | ReloadOutcome::Unchanged { .. } => {
                tracing::info!(parent: &span, unit = %self.unit_name, outcome = record.outcome.name(), generation = record.generation, "reload finished");
            }
            other => {
                tracing::warn!(parent: &span, unit = %self.unit_name, outcome = other.name(), error = other.error().unwrap_or(""), "reload did not activate");
            }
        }
        self.remember(&record);
        if let Some(reply) = reply {
            let _ = reply.send(record);
        }
        if self.degraded {
            self.schedule_restore(myself);
        }
    }

    /// Adds `record` to the history (dropping the oldest past the limit) and tells the observer.
    pub(super) fn remember(&mut self, record: &ReloadRecord) {
        if self.history.len() == self.history_limit {
            self.history.pop_front();
        }
        self.history.push_back(record.clone());
        if let Some(observer) = &self.observer {
            observer.reload_finished(record);
        }
    }
}
