//! The Supervisor: one per slot; every reload, try-activate and status request passes through
//! its mailbox.
//!
//! Reloads are serialized by construction: the Supervisor takes up one request at a time and
//! keeps the rest in a [queue](queue) (requests from the file watcher and from signals
//! coalesce, so only the latest of those waits). It never does slow work in its own handler.
//! A Candidate builds each spec and reports back by message ([candidates]); the Active swaps the
//! built unit in and reports back by message; the report becomes exactly one
//! [`ReloadOutcome`](crate::ReloadOutcome) ([outcomes]). Meanwhile the Supervisor answers
//! [status] at once.
//!
//! It owns the generation counter, the last-known-good spec and the reload history, restores a
//! degraded slot and reverts a generation on probation ([recovery]), can hand its state over
//! and exit while idle ([hibernation]), and stops everything on [shutdown].
//!
//! | message | sent by | reply |
//! |---|---|---|
//! | [`SupervisorMsg::Reload`] | the runtime, the admin API, embedders (`call!`) | a [`ReloadRecord`](crate::ReloadRecord) once the request is done |
//! | [`SupervisorMsg::TryActivate`] | the same | the unit's summary, or the build failure |
//! | [`SupervisorMsg::Prepare`] | a fleet coordinator | a [`Prepared`] ticket once the unit is built and held, or the build failure |
//! | [`SupervisorMsg::Commit`] | the same coordinator | a [`ReloadRecord`](crate::ReloadRecord) once the held unit's swap is done |
//! | [`SupervisorMsg::Abort`] | the same coordinator | whether the unit was held |
//! | [`SupervisorMsg::Status`] | anyone | a [`SupervisorStatus`] snapshot, at once |
//! | [`SupervisorMsg::Shutdown`] | the runtime | `()` once the live unit is stopped |
//! | [`SupervisorMsg::Escalate`] | whatever restarts the live unit's children | none |
//! | [`SupervisorMsg::Internal`] | this crate only: Candidates, the Active, timers | none |

mod candidates;
mod hibernation;
mod lineage;
mod messages;
mod outcomes;
mod phase;
mod prepared;
mod queue;
mod recovery;
mod shutdown;
mod state;
mod status;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

pub use hibernation::Resume;
pub use messages::{CommitRequest, Internal, Prepared, ReloadRequest, SupervisorMsg};
pub(crate) use messages::{InternalMsg, SwapReport, SwapResult};
pub(crate) use state::Respawn;
pub(crate) use state::SupervisorState;
pub use state::{ReloadObserver, SupervisorArgs};
pub use status::{RunState, SupervisorStatus};

use crate::active::{Active, ActiveArgs, ActiveMsg};
use crate::slot::Slot;
use crate::unit::Unit;

/// The Supervisor actor of one slot. Spawn it with [`Supervisor::spawn_for`].
pub struct Supervisor<U>(PhantomData<fn() -> U>);

impl<U> Default for Supervisor<U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<U> fmt::Debug for Supervisor<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Supervisor")
    }
}

impl<U: Unit> Supervisor<U> {
    /// Spawns a Supervisor (and its Active) with `args`. Nothing is live until the first
    /// `Reload` activates, unless `args.resume` carries on from a hibernated Supervisor. The
    /// handle completes when the Supervisor has exited.
    pub async fn spawn_for(
        args: SupervisorArgs<U>,
    ) -> Result<(ActorRef<SupervisorMsg<U>>, tokio::task::JoinHandle<()>), ractor::SpawnErr> {
        let (actor, handle) = Actor::spawn(None, Supervisor::<U>::default(), args).await?;
        let handle = tokio::spawn(async move {
            let _ = handle.await;
        });
        Ok((actor, handle))
    }
}

impl<U: Unit> Actor for Supervisor<U> {
    type Msg = SupervisorMsg<U>;
    type State = SupervisorState<U>;
    type Arguments = SupervisorArgs<U>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs<U>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let unit_name: Arc<str> = Arc::from(args.unit_name.as_str());
        let active = spawn_active(&myself, &args.slot, &unit_name).await?;
        Ok(SupervisorState::new(args, unit_name, active))
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Reload(request, reply) => state.enqueue(request, reply),
            SupervisorMsg::TryActivate(spec, reply) => state.try_activate(&myself, spec, reply),
            SupervisorMsg::Prepare(spec, hold_for, reply) => {
                state.prepare(&myself, spec, hold_for, reply)
            }
            SupervisorMsg::Commit(request, reply) => state.commit(request, reply),
            SupervisorMsg::Abort(ticket, reply) => {
                let _ = reply.send(state.abort(ticket));
            }
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(state.status(&myself));
            }
            SupervisorMsg::Shutdown(reply) => state.begin_shutdown(reply, &myself),
            SupervisorMsg::Escalate { reason } => state.escalate(reason),
            SupervisorMsg::Internal(internal) => match internal.message {
                InternalMsg::CandidateBuilt {
                    request,
                    result,
                    elapsed,
                } => state.candidate_built(request, *result, elapsed, &myself),
                InternalMsg::CandidateGone { request, reason } => {
                    state.candidate_gone(request, reason, &myself)
                }
                InternalMsg::SwapFinished(report) => state.swap_finished(*report, &myself),
                InternalMsg::ActiveStopped => state.active_stopped(&myself),
                InternalMsg::RetryRestore => state.recovery.timer_fired(),
                InternalMsg::PreparedExpired { ticket } => state.prepared_expired(ticket),
                InternalMsg::Hibernate(reply) => {
                    // Either it stays (busy) or it leaves: nothing new starts either way.
                    state.hibernate(reply, &myself).await;
                    return Ok(());
                }
            },
        }
        // Whatever just finished, the next request (or a due restore) may start now.
        state.pump(&myself).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The default would stop the Supervisor whenever a child exits, even normally.
        let (cell, reason, failed) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".to_owned()), false)
            }
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string(), true),
            _ => return Ok(()),
        };
        if cell.get_id() == state.active.get_id() && state.phase.is_leaving() {
            // Stopping normally after a shutdown is expected; dying instead is not.
            if failed {
                state.active_failed_in_shutdown(&reason, &myself);
            }
        } else if cell.get_id() == state.active.get_id() {
            state.active_exited(&reason, &myself).await;
        }
        state.pump(&myself).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.abandon();
        Ok(())
    }
}

/// Spawns the Active of `slot`, linked to `supervisor`, adopting whatever the slot publishes.
async fn spawn_active<U: Unit>(
    supervisor: &ActorRef<SupervisorMsg<U>>,
    slot: &Arc<Slot<U>>,
    unit_name: &Arc<str>,
) -> Result<ActorRef<ActiveMsg<U>>, ractor::SpawnErr> {
    let args = ActiveArgs {
        slot: slot.clone(),
        supervisor: supervisor.clone(),
        unit_name: unit_name.clone(),
        live: slot.current_live(),
    };
    let (active, _) =
        Actor::spawn_linked(None, Active::<U>::new(), args, supervisor.get_cell()).await?;
    Ok(active)
}
