//! The Active: one actor per slot, owning the live unit and carrying out swaps.
//!
//! The Active never sits on the request path: callers take leases from the [`Slot`]. It only
//! changes what the slot publishes, in one of two orders ([swap]):
//!
//! - **start-first** (make before break): start the new unit while the old one serves. If the
//!   start fails, stop the new unit; the old one was never touched (`RolledBack`). If it
//!   succeeds, publish it, then drain and stop the old unit in the background ([retire]).
//! - **stop-first** (break before make): close the gate (new callers wait), drain and stop the
//!   old unit, start the new one and publish it. If the start fails, start the old unit again
//!   (`RolledBack`); if that fails too, the slot stays closed (`Degraded`).
//!
//! Units that hand over state are drained before they export it, so nothing they did is lost
//! and every call queued at the gate is served once, by the new unit.
//!
//! | message | sent by | reply |
//! |---|---|---|
//! | [`ActiveMsg::Swap`] | the Supervisor, with a built unit | `SwapFinished` to the Supervisor |
//! | [`ActiveMsg::Shutdown`] | the Supervisor | `ActiveStopped` to the Supervisor, then it exits |
//! | [`ActiveMsg::Detach`] | the Supervisor, hibernating | `()` once retiring units are stopped, then it exits |

mod retire;
mod swap;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

pub(crate) use retire::stop_for_good;

use crate::guard::{GRACE, deadline_in, guarded, later};
use crate::slot::{Live, Slot};
use crate::supervisor::{InternalMsg, SupervisorMsg, SwapReport};
use crate::unit::{SwapSettings, Unit};

/// Owns the live unit of one slot.
#[derive(Debug)]
pub(crate) struct Active<U>(PhantomData<fn() -> U>);

impl<U> Active<U> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// Messages to the Active. Only the Supervisor sends them.
pub(crate) enum ActiveMsg<U: Unit> {
    /// Swap `unit` in under `generation`. No reply; the Supervisor is told by `SwapFinished`.
    Swap {
        request: u64,
        unit: Box<U>,
        generation: u64,
        span: tracing::Span,
    },
    /// Close the slot, drain and stop the live unit and every retiring one. No reply; the
    /// Supervisor is told by `ActiveStopped`.
    Shutdown,
    /// Finish retiring replaced units, then exit, leaving the live unit published and running
    /// (the Supervisor hibernates). Answered when done.
    Detach(ractor::RpcReplyPort<()>),
}

// Units need not be `Debug`: a swap order shows its request and generation.
impl<U: Unit> fmt::Debug for ActiveMsg<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActiveMsg::Swap {
                request,
                generation,
                ..
            } => f
                .debug_struct("Swap")
                .field("request", request)
                .field("generation", generation)
                .finish_non_exhaustive(),
            ActiveMsg::Shutdown => f.write_str("Shutdown"),
            ActiveMsg::Detach(_) => f.write_str("Detach"),
        }
    }
}

// Local only, under ractor's `cluster` feature (see `SupervisorMsg`).
#[cfg(feature = "cluster")]
impl<U: Unit> ractor::Message for ActiveMsg<U> {}

/// What the Active is spawned with.
pub(crate) struct ActiveArgs<U: Unit> {
    pub(crate) slot: Arc<Slot<U>>,
    pub(crate) supervisor: ActorRef<SupervisorMsg<U>>,
    pub(crate) unit_name: Arc<str>,
    /// What is live already (when the Active is restarted after a crash, or after hibernation).
    pub(crate) live: Option<Arc<Live<U>>>,
}

/// The Active's state: the live unit and the units retiring behind it.
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

impl<U: Unit> fmt::Debug for ActiveArgs<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveArgs")
            .field("slot", &self.slot)
            .field("supervisor", &self.supervisor)
            .field("unit_name", &self.unit_name)
            .field("live", &self.live)
            .finish()
    }
}

impl<U: Unit> fmt::Debug for ActiveState<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveState")
            .field("slot", &self.slot)
            .field("supervisor", &self.supervisor)
            .field("unit_name", &self.unit_name)
            .field("live", &self.live)
            .field("retiring", &self.retiring.len())
            .field("degraded_hold", &self.degraded_hold.is_some())
            .finish()
    }
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
                let finished = InternalMsg::SwapFinished(Box::new(report));
                let _ = state
                    .supervisor
                    .send_message(SupervisorMsg::internal(finished));
            }
            ActiveMsg::Detach(reply) => {
                while state.retiring.join_next().await.is_some() {}
                let _ = reply.send(());
                myself.stop(None);
            }
            ActiveMsg::Shutdown => {
                state.shutdown().await;
                let stopped = SupervisorMsg::internal(InternalMsg::ActiveStopped);
                let _ = state.supervisor.send_message(stopped);
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

/// Starts `unit`, giving it until the start timeout and then the stop timeout to clean up
/// after itself before it is abandoned. `what` names the attempt in errors (`start`,
/// `restore`).
async fn start_unit<U: Unit>(
    unit_name: &str,
    unit: &U,
    settings: &SwapSettings,
    what: &str,
) -> Result<(), String> {
    let deadline = deadline_in(settings.start_timeout);
    guarded(
        unit_name,
        what,
        later(deadline, settings.stop_timeout),
        || unit.start(deadline),
    )
    .await
}

/// Stops `unit`, giving it the stop timeout (and a moment more before it is abandoned).
async fn stop_unit<U: Unit>(
    unit_name: &str,
    unit: &U,
    settings: &SwapSettings,
) -> Result<(), String> {
    let deadline = deadline_in(settings.stop_timeout);
    guarded(unit_name, "stop", later(deadline, GRACE), || {
        unit.stop(deadline)
    })
    .await
}
