//! Outcomes: turning what the Active reports into exactly one [`ReloadOutcome`] per request,
//! and keeping the books: the [lineage](super::lineage) moves on past an activation, and every
//! record goes into the [`History`] and to the observer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use ractor::ActorRef;

use super::SupervisorMsg;
use super::lineage::Activation;
use super::messages::{SwapReport, SwapResult};
use super::state::{ReloadObserver, SupervisorState};
use crate::outcome::{Origin, ReloadOutcome, ReloadRecord};
use crate::unit::Unit;

/// The most recent records, oldest first, and who else is told of each.
pub(super) struct History {
    records: VecDeque<ReloadRecord>,
    /// How many records are kept (at least one).
    limit: usize,
    observer: Option<Arc<dyn ReloadObserver>>,
}

impl History {
    /// `records` carried on (from a hibernated Supervisor), keeping `limit` of them from now on.
    pub(super) fn new(
        records: VecDeque<ReloadRecord>,
        limit: usize,
        observer: Option<Arc<dyn ReloadObserver>>,
    ) -> Self {
        Self {
            records,
            limit: limit.max(1),
            observer,
        }
    }

    /// Adds `record` (dropping the oldest past the limit) and tells the observer.
    pub(super) fn remember(&mut self, record: &ReloadRecord) {
        if self.records.len() == self.limit {
            self.records.pop_front();
        }
        self.records.push_back(record.clone());
        if let Some(observer) = &self.observer {
            observer.reload_finished(record);
        }
    }

    /// The most recent record.
    pub(super) fn last(&self) -> Option<&ReloadRecord> {
        self.records.back()
    }

    /// Every record kept, oldest first.
    pub(super) fn records(&self) -> Vec<ReloadRecord> {
        self.records.iter().cloned().collect()
    }

    /// The records, to hand on to a later Supervisor.
    pub(super) fn hand_on(&mut self) -> VecDeque<ReloadRecord> {
        // A deque keeps room for four records from its first; a slot that sleeps (thousands
        // of idle plugins) keeps only what it holds.
        let mut records = std::mem::take(&mut self.records);
        records.shrink_to_fit();
        records
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("records", &self.records)
            .field("limit", &self.limit)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl<U: Unit> SupervisorState<U> {
    /// The Active finished the current request's swap.
    pub(super) fn swap_finished(
        &mut self,
        report: SwapReport<U>,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        let Some(current) = self.phase.swapping(report.request) else {
            return;
        };
        current.swapped_in(report.timings);
        let origin = current.origin();
        let restoring = origin == Origin::Restore;
        let outcome = match report.result {
            SwapResult::Activated => {
                let reason = current.reason();
                let generation = self.lineage.activated(Activation {
                    origin,
                    spec: report.spec,
                    settings: report.settings,
                    fingerprint: current.fingerprint(),
                    identity: current.identity(),
                });
                self.recovery.recovered();
                match origin {
                    Origin::Restore => ReloadOutcome::Restored { generation },
                    Origin::Revert => ReloadOutcome::Reverted { reason },
                    _ => ReloadOutcome::Activated { generation },
                }
            }
            // A restore that fails to start is neither answered nor recorded: it is retried
            // after the backoff. A start-first swap reports it as rolled back (to nothing), a
            // stop-first one as degraded; both are the same failure. (Taking the first for a
            // finished reload retried it every 100 ms without backing off, and pushed the
            // degradation out of the history with `rolled_back` records.)
            SwapResult::RolledBack(error) | SwapResult::Degraded { error, .. } if restoring => {
                self.recovery.degrade();
                tracing::warn!(unit = %self.unit_name, %error, "restore failed to start; retrying later");
                self.restore_failed(myself);
                return;
            }
            SwapResult::RolledBack(error) => ReloadOutcome::RolledBack { error },
            SwapResult::Degraded {
                error,
                restore_error,
            } => {
                self.recovery.degrade();
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
        let Some(current) = self.phase.end() else {
            return;
        };
        let (record, span, reply) = current.finish(outcome, self.lineage.generation());
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
        self.history.remember(&record);
        if let Some(reply) = reply {
            let _ = reply.send(record);
        }
        if self.recovery.is_degraded() {
            self.schedule_restore(myself);
        }
    }
}
