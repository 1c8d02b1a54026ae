//! Retiring units: a replaced unit drains and stops in the background, and at shutdown the live
//! unit drains and stops for good.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use super::{ActiveState, stop_unit};
use crate::guard::deadline_in;
use crate::retirement::RetireStage;
use crate::slot::{Live, Slot};
use crate::unit::{SwapSettings, Unit};

impl<U: Unit> ActiveState<U> {
    /// Drains and stops a replaced unit in the background, so the swap's caller is answered
    /// as soon as the new unit is live.
    pub(super) fn retire(&mut self, old: Arc<Live<U>>, settings: SwapSettings) {
        let unit_name = self.unit_name.clone();
        let slot = self.slot.clone();
        let span = tracing::info_span!("retire", generation = old.generation());
        self.retiring.spawn(
            async move {
                let began = Instant::now();
                let drained = old.drain(deadline_in(settings.drain_timeout)).await;
                note_drain(&slot, &old, drained, began);
                let stopped = stop_unit(&unit_name, &**old.unit(), &settings).await;
                note_stop(&slot, &old, stopped, began);
            }
            .instrument(span),
        );
    }

    /// Closes the slot for good, drains and stops the live unit, then waits for every unit
    /// still retiring.
    pub(super) async fn shutdown(&mut self) {
        self.degraded_hold = None;
        self.live = None;
        stop_for_good(&self.slot, &self.unit_name).await;
        while self.retiring.join_next().await.is_some() {}
    }
}

/// Records a drain that passed its deadline with work in flight.
pub(super) fn note_drain<U>(slot: &Slot<U>, old: &Live<U>, drained: bool, began: Instant) {
    if drained {
        return;
    }
    let in_flight = old.in_flight();
    tracing::warn!(
        in_flight,
        "drain deadline passed; stopping with work in flight"
    );
    let error = format!("the drain deadline passed with {in_flight} requests in flight");
    slot.retirements
        .failed(old.generation(), RetireStage::Drain, error, began.elapsed());
}

/// Records how the stop of a replaced unit went; the retirement is then over.
pub(super) fn note_stop<U>(
    slot: &Slot<U>,
    old: &Live<U>,
    stopped: Result<(), String>,
    began: Instant,
) {
    if let Err(error) = stopped {
        tracing::warn!(%error, "stopping the replaced unit was not clean");
        slot.retirements
            .failed(old.generation(), RetireStage::Stop, error, began.elapsed());
    }
    slot.retirements.retired();
}

/// Closes `slot` for good (every caller, waiting or new, fails at once), then drains the unit
/// it published and stops it, each under the unit's own timeouts. Used by the Active at
/// shutdown, and by a hibernating Supervisor's handle, which stops a slot without waking it.
pub(crate) async fn stop_for_good<U: Unit>(slot: &Slot<U>, unit_name: &str) {
    let Some(live) = slot.close() else {
        return;
    };
    let settings = live.unit().swap_settings();
    if !live.drain(deadline_in(settings.drain_timeout)).await {
        tracing::warn!(
            in_flight = live.in_flight(),
            "drain deadline passed at shutdown"
        );
    }
    if let Err(error) = stop_unit(unit_name, &**live.unit(), &settings).await {
        tracing::warn!(%error, "stopping at shutdown was not clean");
    }
}
