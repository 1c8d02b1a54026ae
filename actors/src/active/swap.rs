//! The two swap orders, start-first and stop-first, and the handover of state between units.

use std::sync::Arc;

use super::{ActiveState, start_unit, stop_unit, timed};
use crate::SwapMode;
use crate::guard::{GRACE, deadline_in, guarded, later};
use crate::outcome::StageTimings;
use crate::slot::Live;
use crate::supervisor::SwapResult;
use crate::unit::{SwapSettings, Unit};

/// A built unit on its way in: the generation it is published under, and how it wants to be
/// swapped in.
struct Incoming<U> {
    unit: Arc<U>,
    generation: u64,
    settings: SwapSettings,
}

impl<U> std::fmt::Debug for Incoming<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("generation", &self.generation)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<U: Unit> ActiveState<U> {
    /// Swaps `unit` in under `generation`, in the order its settings ask for.
    pub(super) async fn swap(
        &mut self,
        unit: Arc<U>,
        generation: u64,
        settings: SwapSettings,
    ) -> (SwapResult, StageTimings) {
        // Callers that meet a closed gate wait for as long as a swap may keep it closed.
        self.slot.set_gate_timeout(
            settings
                .drain_timeout
                .saturating_add(settings.stop_timeout)
                .saturating_add(settings.start_timeout),
        );
        let mut timings = StageTimings::default();
        let new = Incoming {
            unit,
            generation,
            settings,
        };
        let result = match settings.mode {
            SwapMode::StartFirst => self.start_first(new, &mut timings).await,
            SwapMode::StopFirst => self.stop_first(new, &mut timings).await,
        };
        (result, timings)
    }

    /// Stops a new unit that will not be published (its start or its handover failed).
    async fn discard(&self, unit: &U, settings: &SwapSettings, timings: &mut StageTimings) {
        let stopped = timed(
            "stop",
            &mut timings.stop,
            stop_unit(&self.unit_name, unit, settings),
        )
        .await;
        if let Err(error) = stopped {
            tracing::warn!(%error, "stopping the failed candidate was not clean");
        }
    }

    /// Publishes `unit` under `generation` as the live unit.
    fn publish(&mut self, unit: Arc<U>, generation: u64) {
        let live = Live::new(unit, generation);
        self.slot.publish(Some(live.clone()));
        self.live = Some(live);
    }

    async fn start_first(&mut self, new: Incoming<U>, timings: &mut StageTimings) -> SwapResult {
        let Incoming {
            unit,
            generation,
            settings,
        } = new;
        let started = timed(
            "start",
            &mut timings.start,
            start_unit(&self.unit_name, &*unit, &settings, "start"),
        )
        .await;
        if let Err(error) = started {
            // The old unit was never touched: it goes on serving.
            self.discard(&unit, &settings, timings).await;
            if self.live.is_none() {
                // There was nothing before either: callers should fail at once, not wait.
                self.slot.mark_down();
            }
            return SwapResult::RolledBack(error);
        }
        let old = self.live.take();
        if let Some(old) = old.as_ref().filter(|_| unit.hands_over_state()) {
            self.slot.publish(None);
            let drain_deadline = deadline_in(settings.drain_timeout);
            timed("drain", &mut timings.drain, old.drain(drain_deadline)).await;
            if let Err(error) = self.hand_over(old.unit(), &unit, &settings).await {
                // Republished as a fresh record: the old one is marked as retiring.
                self.publish(old.unit().clone(), old.generation());
                self.discard(&unit, &settings, timings).await;
                return SwapResult::RolledBack(error);
            }
        }
        self.publish(unit, generation);
        self.degraded_hold = None;
        if let Some(old) = old {
            self.retire(old, settings);
        }
        SwapResult::Activated
    }

    async fn stop_first(&mut self, new: Incoming<U>, timings: &mut StageTimings) -> SwapResult {
        let Incoming {
            unit,
            generation,
            settings,
        } = new;
        // Units still retiring from a start-first swap may hold what this swap must free.
        while self.retiring.join_next().await.is_some() {}
        // Shared resources the old unit releases (sockets) stay open for the new one.
        let hold = unit.hold_resources();
        let old = self.live.take();
        let mut state = None;
        if let Some(old) = &old {
            self.slot.publish(None);
            let began = tokio::time::Instant::now();
            let drain_deadline = deadline_in(settings.drain_timeout);
            let drained = timed("drain", &mut timings.drain, old.drain(drain_deadline)).await;
            if unit.hands_over_state() {
                // Bounded: the gate is closed while this runs.
                let deadline = deadline_in(settings.stop_timeout);
                let exported = guarded(&self.unit_name, "state export", deadline, || {
                    old.unit().export_state(deadline)
                })
                .await;
                match exported {
                    Ok(exported) => state = exported,
                    Err(error) => {
                        // Drained but not stopped, the old unit still holds its state: it
                        // serves on (republished as a fresh record), and nothing is lost.
                        self.publish(old.unit().clone(), old.generation());
                        drop(hold);
                        return SwapResult::RolledBack(error);
                    }
                }
            }
            super::retire::note_drain(&self.slot, old, drained, began);
            let stopped = timed(
                "stop",
                &mut timings.stop,
                stop_unit(&self.unit_name, &**old.unit(), &settings),
            )
            .await;
            super::retire::note_stop(&self.slot, old, stopped, began);
        }
        let mut started = timed(
            "start",
            &mut timings.start,
            start_unit(&self.unit_name, &*unit, &settings, "start"),
        )
        .await;
        if started.is_ok()
            && let Some(state) = state
        {
            // The unit bounds its import by the start timeout itself; the guard, a moment later.
            let deadline = later(deadline_in(settings.start_timeout), GRACE);
            started = guarded(&self.unit_name, "state import", deadline, || {
                unit.import_state(state)
            })
            .await;
        }
        let result = match started {
            Ok(()) => {
                self.publish(unit, generation);
                SwapResult::Activated
            }
            Err(error) => {
                if let Err(stop_error) = stop_unit(&self.unit_name, &*unit, &settings).await {
                    tracing::warn!(error = %stop_error, "stopping the failed candidate was not clean");
                }
                self.restore_previous(old, error, &settings, timings).await
            }
        };
        if matches!(result, SwapResult::Degraded { .. }) {
            self.slot.mark_down();
            if self.degraded_hold.is_none() {
                self.degraded_hold = hold;
            }
        } else {
            drop(hold);
            self.degraded_hold = None;
        }
        result
    }

    /// After a failed stop-first start: starts the previous unit again (`RolledBack`), or
    /// reports that nothing serves (`Degraded`).
    async fn restore_previous(
        &mut self,
        old: Option<Arc<Live<U>>>,
        error: String,
        settings: &SwapSettings,
        timings: &mut StageTimings,
    ) -> SwapResult {
        let Some(old) = old else {
            return SwapResult::Degraded {
                error,
                restore_error: "there was no previous unit to restore".to_owned(),
            };
        };
        let restored = timed(
            "rollback",
            &mut timings.rollback,
            start_unit(&self.unit_name, &**old.unit(), settings, "restore"),
        )
        .await;
        match restored {
            Ok(()) => {
                self.publish(old.unit().clone(), old.generation());
                SwapResult::RolledBack(error)
            }
            Err(restore_error) => SwapResult::Degraded {
                error,
                restore_error,
            },
        }
    }

    /// Moves the state of `old` (drained) into `new` (started, not yet published).
    async fn hand_over(
        &self,
        old: &Arc<U>,
        new: &Arc<U>,
        settings: &SwapSettings,
    ) -> Result<(), String> {
        let deadline = deadline_in(settings.start_timeout);
        // A failed, panicking or hanging export rolls the swap back: handing over nothing
        // would silently reset the state.
        let state = guarded(&self.unit_name, "state export", deadline, || {
            old.export_state(deadline)
        })
        .await?;
        match state {
            Some(state) => {
                // The unit bounds its import by the start timeout itself, counted from the
                // import; the guard bounds export and import together, and waits a moment past
                // that, so that a unit which gives up on time (after a quick export) reports
                // its own error.
                let deadline = later(deadline, GRACE);
                guarded(&self.unit_name, "state import", deadline, || {
                    new.import_state(state)
                })
                .await
            }
            None => Ok(()),
        }
    }
}
