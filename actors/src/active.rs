//! The Active: one actor per slot, owning the live unit and carrying out swaps.
//!
//! The Active never sits on the request path: callers take leases from the [`Slot`]. It only
//! changes what the slot publishes, in one of two orders:
//!
//! - **start-first** (make before break): start the new unit while the old one serves. If the
//!   start fails, stop the new unit; the old one was never touched (`RolledBack`). If it
//!   succeeds, publish it, then drain and stop the old unit in the background.
//! - **stop-first** (break before make): close the gate (new callers wait), drain and stop the
//!   old unit, start the new one and publish it. If the start fails, start the old unit again
//!   (`RolledBack`); if that fails too, the slot stays closed (`Degraded`).
//!
//! Units that hand over state are drained before they export it, so nothing they did is lost
//! and every call queued at the gate is served once, by the new unit.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::SwapMode;
use crate::guard::{deadline_in, guarded, later};
use crate::outcome::StageTimings;
use crate::slot::{Live, Slot};
use crate::supervisor::{SupervisorMsg, SwapReport, SwapResult};
use crate::unit::{SwapSettings, Unit};

/// Owns the live unit of one slot.
pub(crate) struct Active<U>(PhantomData<fn() -> U>);

impl<U> Active<U> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// Messages to the Active. Only the Supervisor sends them.
pub(crate) enum ActiveMsg<U: Unit> {
    /// Swap `unit` in under `generation`; the Supervisor is told by `SwapFinished`.
    Swap {
        request: u64,
        unit: Box<U>,
        generation: u64,
        span: tracing::Span,
    },
    /// Close the slot, drain and stop the live unit and every retiring one; the Supervisor is
    /// told by `ActiveStopped`.
    Shutdown,
    /// Finish retiring replaced units, then exit, leaving the live unit published and running
    /// (the Supervisor hibernates). Answered when done.
    Detach(ractor::RpcReplyPort<()>),
}

pub(crate) struct ActiveArgs<U: Unit> {
    pub(crate) slot: Arc<Slot<U>>,
    pub(crate) supervisor: ActorRef<SupervisorMsg<U>>,
    pub(crate) unit_name: Arc<str>,
    /// What is live already (when the Active is restarted after a crash).
    pub(crate) live: Option<Arc<Live<U>>>,
}

pub(crate) struct ActiveState<U: Unit> {
    slot: Arc<Slot<U>>,
    supervisor: ActorRef<SupervisorMsg<U>>,
    unit_name: Arc<str>,
    live: Option<Arc<Live<U>>>,
    /// Replaced units draining and stopping in the background (start-first).
    retiring: JoinSet<()>,
    /// While degraded, the resource hold of the failed swap is kept, so that shared
    /// resources (listening sockets) are still there for the restore.
    degraded_hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl<U: Unit> Actor for Active<U> {
    type Msg = ActiveMsg<U>;
    type State = ActiveState<U>;
    type Arguments = ActiveArgs<U>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ActiveArgs<U>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ActiveState {
            slot: args.slot,
            supervisor: args.supervisor,
            unit_name: args.unit_name,
            live: args.live,
            retiring: JoinSet::new(),
            degraded_hold: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        while state.retiring.try_join_next().is_some() {}
        match message {
            ActiveMsg::Swap {
                request,
                unit,
                generation,
                span,
            } => {
                let unit: Arc<U> = Arc::from(unit);
                let settings = unit.swap_settings();
                let swap_span = tracing::info_span!(parent: &span, "swap", mode = %settings.mode, duration_ms = tracing::field::Empty);
                let started = Instant::now();
                let (result, timings) = state
                    .swap(unit.clone(), generation, settings)
                    .instrument(swap_span.clone())
                    .await;
                swap_span.record("duration_ms", millis(started.elapsed()));
                let report = SwapReport {
                    request,
                    result,
                    timings,
                    spec: unit.spec(),
                    settings,
                };
                let _ = state
                    .supervisor
                    .send_message(SupervisorMsg::SwapFinished(Box::new(report)));
            }
            ActiveMsg::Detach(reply) => {
                while state.retiring.join_next().await.is_some() {}
                let _ = reply.send(());
                myself.stop(None);
            }
            ActiveMsg::Shutdown => {
                state.shutdown().await;
                let _ = state.supervisor.send_message(SupervisorMsg::ActiveStopped);
                myself.stop(None);
            }
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs `work` inside a child span named after the stage (`start`, `drain`, `stop`,
/// `rollback`), recording its duration in the span and adding it to `slot`.
async fn timed<T>(
    stage: &'static str,
    slot: &mut Option<Duration>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let span = match stage {
        "start" => tracing::info_span!("start", duration_ms = tracing::field::Empty),
        "drain" => tracing::info_span!("drain", duration_ms = tracing::field::Empty),
        "stop" => tracing::info_span!("stop", duration_ms = tracing::field::Empty),
        _ => tracing::info_span!("rollback", duration_ms = tracing::field::Empty),
    };
    let started = Instant::now();
    let output = work.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    span.record("duration_ms", millis(elapsed));
    *slot = Some(slot.unwrap_or_default() + elapsed);
    output
}

impl<U: Unit> ActiveState<U> {
    async fn swap(
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
        let result = match settings.mode {
            SwapMode::StartFirst => {
                self.start_first(unit, generation, settings, &mut timings)
                    .await
            }
            SwapMode::StopFirst => {
                self.stop_first(unit, generation, settings, &mut timings)
                    .await
            }
        };
        (result, timings)
    }

    async fn start_unit(
        &self,
        unit: &U,
        settings: &SwapSettings,
        what: &str,
    ) -> Result<(), String> {
        let deadline = deadline_in(settings.start_timeout);
        // The unit is asked to give up by `deadline` and clean up after itself; the guard's own
        // deadline leaves it the stop timeout to do so before it is abandoned.
        guarded(
            &self.unit_name,
            what,
            later(deadline, settings.stop_timeout),
            async { unit.start(deadline).await },
        )
        .await
    }

    async fn stop_unit(&self, unit: &U, settings: &SwapSettings) -> Result<(), String> {
        let deadline = deadline_in(settings.stop_timeout);
        guarded(
            &self.unit_name,
            "stop",
            later(deadline, Duration::from_millis(100)),
            async { unit.stop(deadline).await },
        )
        .await
    }

    async fn start_first(
        &mut self,
        unit: Arc<U>,
        generation: u64,
        settings: SwapSettings,
        timings: &mut StageTimings,
    ) -> SwapResult {
        if let Err(error) = timed(
            "start",
            &mut timings.start,
            self.start_unit(&unit, &settings, "start"),
        )
        .await
        {
            // The old unit was never touched: it goes on serving.
            if let Err(stop_error) =
                timed("stop", &mut timings.stop, self.stop_unit(&unit, &settings)).await
            {
                tracing::warn!(error = %stop_error, "stopping the failed candidate was not clean");
            }
            if self.live.is_none() {
                // There was nothing before either: callers should fail at once, not wait.
                self.slot.mark_down();
            }
            return SwapResult::RolledBack(error);
        }
        let new_live = Live::new(unit.clone(), generation);
        let old = self.live.take();
        if let Some(old) = old.as_ref().filter(|_| unit.hands_over_state()) {
            self.slot.publish(None);
            let drain_deadline = deadline_in(settings.drain_timeout);
            timed("drain", &mut timings.drain, old.drain(drain_deadline)).await;
            if let Err(error) = self.hand_over(old.unit(), &unit, &settings).await {
                // Republished as a fresh record: the old one is marked as retiring.
                let restored = Live::new(old.unit().clone(), old.generation());
                self.slot.publish(Some(restored.clone()));
                self.live = Some(restored);
                if let Err(stop_error) =
                    timed("stop", &mut timings.stop, self.stop_unit(&unit, &settings)).await
                {
                    tracing::warn!(error = %stop_error, "stopping the candidate after a failed handover was not clean");
                }
                return SwapResult::RolledBack(error);
            }
            self.slot.publish(Some(new_live.clone()));
        } else {
            self.slot.publish(Some(new_live.clone()));
        }
        self.live = Some(new_live);
        self.degraded_hold = None;
        if let Some(old) = old {
            self.retire(old, settings);
        }
        SwapResult::Activated
    }

    async fn stop_first(
        &mut self,
        unit: Arc<U>,
        generation: u64,
        settings: SwapSettings,
        timings: &mut StageTimings,
    ) -> SwapResult {
        // Units still retiring from a start-first swap may hold what this swap must free.
        while self.retiring.join_next().await.is_some() {}
        // Shared resources the old unit releases (sockets) stay open for the new one.
        let hold = unit.hold_resources();
        let old = self.live.take();
        let mut state = None;
        if let Some(old) = &old {
            self.slot.publish(None);
            let drain_deadline = deadline_in(settings.drain_timeout);
            timed("drain", &mut timings.drain, old.drain(drain_deadline)).await;
            if unit.hands_over_state() {
                // Bounded: the gate is closed while this runs.
                let export = crate::guard::catch_panics(|| old.unit().export_state());
                state = crate::guard::contained(
                    &self.unit_name,
                    "state export",
                    deadline_in(settings.stop_timeout),
                    export,
                )
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            }
            if let Err(error) = timed(
                "stop",
                &mut timings.stop,
                self.stop_unit(old.unit(), &settings),
            )
            .await
            {
                tracing::warn!(%error, "stopping the previous unit was not clean");
            }
        }
        let mut started = timed(
            "start",
            &mut timings.start,
            self.start_unit(&unit, &settings, "start"),
        )
        .await;
        if started.is_ok()
            && let Some(state) = state
        {
            started = guarded(
                &self.unit_name,
                "state import",
                deadline_in(settings.start_timeout),
                async { unit.import_state(state).await },
            )
            .await;
        }
        let result = match started {
            Ok(()) => {
                let live = Live::new(unit.clone(), generation);
                self.slot.publish(Some(live.clone()));
                self.live = Some(live);
                SwapResult::Activated
            }
            Err(error) => {
                if let Err(stop_error) = self.stop_unit(&unit, &settings).await {
                    tracing::warn!(error = %stop_error, "stopping the failed candidate was not clean");
                }
                match old {
                    None => SwapResult::Degraded {
                        error,
                        restore_error: "there was no previous unit to restore".to_owned(),
                    },
                    Some(old) => {
                        let restored = timed(
                            "rollback",
                            &mut timings.rollback,
                            self.start_unit(old.unit(), &settings, "restore"),
                        )
                        .await;
                        match restored {
                            Ok(()) => {
                                let live = Live::new(old.unit().clone(), old.generation());
                                self.slot.publish(Some(live.clone()));
                                self.live = Some(live);
                                SwapResult::RolledBack(error)
                            }
                            Err(restore_error) => SwapResult::Degraded {
                                error,
                                restore_error,
                            },
                        }
                    }
                }
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

    async fn hand_over(
        &self,
        old: &Arc<U>,
        new: &Arc<U>,
        settings: &SwapSettings,
    ) -> Result<(), String> {
        let deadline = deadline_in(settings.start_timeout);
        let state = guarded(&self.unit_name, "state export", deadline, async {
            Ok::<_, String>(
                crate::guard::catch_panics(|| old.export_state())
                    .await
                    .ok()
                    .flatten(),
            )
        })
        .await?;
        match state {
            Some(state) => {
                guarded(&self.unit_name, "state import", deadline, async {
                    new.import_state(state).await
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// Drains and stops a replaced unit in the background, so the swap's caller is answered
    /// as soon as the new unit is live.
    fn retire(&mut self, old: Arc<Live<U>>, settings: SwapSettings) {
        let unit_name = self.unit_name.clone();
        let span = tracing::info_span!("retire", generation = old.generation());
        self.retiring.spawn(
            async move {
                let drained = old.drain(deadline_in(settings.drain_timeout)).await;
                if !drained {
                    tracing::warn!(
                        in_flight = old.in_flight(),
                        "drain deadline passed; stopping with work in flight"
                    );
                }
                let deadline = deadline_in(settings.stop_timeout);
                let stopped = guarded(
                    &unit_name,
                    "stop",
                    later(deadline, Duration::from_millis(100)),
                    async { old.unit().stop(deadline).await },
                )
                .await;
                if let Err(error) = stopped {
                    tracing::warn!(%error, "stopping the replaced unit was not clean");
                }
            }
            .instrument(span),
        );
    }

    async fn shutdown(&mut self) {
        self.degraded_hold = None;
        self.slot.close();
        if let Some(live) = self.live.take() {
            let settings = live.unit().swap_settings();
            if !live.drain(deadline_in(settings.drain_timeout)).await {
                tracing::warn!(
                    in_flight = live.in_flight(),
                    "drain deadline passed at shutdown"
                );
            }
            if let Err(error) = self.stop_unit(live.unit(), &settings).await {
                tracing::warn!(%error, "stopping at shutdown was not clean");
            }
        }
        while self.retiring.join_next().await.is_some() {}
    }
}
