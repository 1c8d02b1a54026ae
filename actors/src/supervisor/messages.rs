//! What the Supervisor is told, and by whom.
//!
//! Callers send the public requests: [`SupervisorMsg::Reload`], [`SupervisorMsg::TryActivate`],
//! the two phases [`SupervisorMsg::Prepare`] then [`SupervisorMsg::Commit`] or
//! [`SupervisorMsg::Abort`], [`SupervisorMsg::Status`], [`SupervisorMsg::Shutdown`] and
//! [`SupervisorMsg::Escalate`]. The
//! protocol's own messages (a Candidate's report, the Active's report, a restore timer, a
//! hibernation request) travel inside [`Internal`], whose contents no code outside this crate
//! can name or construct: a report that skipped the build deadline, or a stop that skipped the
//! drain, cannot be forged.
//!
//! ```compile_fail,E0451
//! use swapvisor_actors::{Internal, SupervisorMsg, Unit};
//!
//! // The contents of `Internal` are private to swapvisor-actors: this does not compile.
//! fn forge<U: Unit>() -> SupervisorMsg<U> {
//!     SupervisorMsg::Internal(Internal { message: todo!() })
//! }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::RpcReplyPort;

use super::hibernation::Resume;
use super::status::SupervisorStatus;
use crate::outcome::{Origin, ReloadRecord, StageTimings};
use crate::unit::{BuildFailure, SwapSettings, Unit};

/// A reload request: the spec, and optionally the generation it expects to replace.
#[derive(Debug)]
pub struct ReloadRequest<S> {
    /// The spec to activate.
    pub spec: Arc<S>,
    /// Compare-and-swap: refuse (`Conflict`) unless this is the current generation.
    pub expected_generation: Option<u64>,
    /// Who asks; watcher and signal requests coalesce.
    pub origin: Origin,
}

impl<S> ReloadRequest<S> {
    /// A request from the API, with no generation check.
    pub fn new(spec: impl Into<S>) -> Self {
        Self {
            spec: Arc::new(spec.into()),
            expected_generation: None,
            origin: Origin::Api,
        }
    }

    /// Refuses the request unless the current generation is `generation`.
    pub fn expecting(mut self, generation: u64) -> Self {
        self.expected_generation = Some(generation);
        self
    }

    /// Marks who asks.
    pub fn from(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }
}

/// A unit built by [`SupervisorMsg::Prepare`] and held for a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared<S> {
    /// Names the held unit in [`SupervisorMsg::Commit`] and [`SupervisorMsg::Abort`].
    pub ticket: u64,
    /// The unit's fingerprint (a config hash), so a coordinator can check every node built
    /// the same thing.
    pub fingerprint: String,
    /// What a try-activate would have reported for it.
    pub summary: S,
}

/// Activates a prepared unit: the second phase of a two-phase reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRequest {
    /// The ticket [`SupervisorMsg::Prepare`] answered.
    pub ticket: u64,
    /// Compare-and-swap: refuse (`Conflict`) unless this is the current generation.
    pub expected_generation: Option<u64>,
    /// Who asks.
    pub origin: Origin,
}

impl CommitRequest {
    /// Commits `ticket`, with no generation check, from a fleet reload.
    pub fn new(ticket: u64) -> Self {
        Self {
            ticket,
            expected_generation: None,
            origin: Origin::Fleet,
        }
    }

    /// Refuses the commit unless the current generation is `generation`.
    pub fn expecting(mut self, generation: u64) -> Self {
        self.expected_generation = Some(generation);
        self
    }
}

/// Messages to the Supervisor.
pub enum SupervisorMsg<U: Unit> {
    /// Activate a spec. Sent by the runtime, the admin API or an embedder; answered with the
    /// record of the request once it has an outcome (`Superseded` if a newer coalescing request
    /// or a shutdown replaced it first).
    Reload(ReloadRequest<U::Spec>, RpcReplyPort<ReloadRecord>),
    /// Build a spec and report whether it builds, without touching the live unit. Sent by the
    /// runtime, the admin API or an embedder; answered with the unit's summary or the build
    /// failure; the candidate is torn down either way.
    TryActivate(Arc<U::Spec>, RpcReplyPort<Result<U::Summary, BuildFailure>>),
    /// The first phase of a two-phase reload (a fleet reload's prepare, sent by the fleet
    /// agent or an embedder's coordinator): build the spec in a
    /// Candidate and hold the built unit, touching nothing, until [`SupervisorMsg::Commit`]
    /// activates it, [`SupervisorMsg::Abort`] drops it, or the given time passes (a coordinator
    /// that vanished leaves nothing held for ever). Answered once the Candidate reports: the
    /// ticket naming the held unit with its fingerprint and summary, or the build failure.
    /// Prepares run beside reloads, like try-activates.
    Prepare(
        Arc<U::Spec>,
        Duration,
        RpcReplyPort<Result<Prepared<U::Summary>, BuildFailure>>,
    ),
    /// The second phase, from the same coordinator: activate a prepared unit. Queued and
    /// swapped exactly like a reload
    /// (serialized, compare-and-swap, rollback on a failed start, `Unchanged` for the live
    /// spec), only without building again. Answered with the record; a ticket that is not held
    /// (never prepared, aborted, expired, or already committed) is answered `Rejected` at stage
    /// `build` and touches nothing.
    Commit(CommitRequest, RpcReplyPort<ReloadRecord>),
    /// Drop a prepared unit; sent by the coordinator when a fleet reload is called off.
    /// Answered true when it was held.
    Abort(u64, RpcReplyPort<bool>),
    /// A snapshot of the Supervisor's state. Sent by anyone (status endpoints, tests);
    /// answered at once, even while a reload runs.
    Status(RpcReplyPort<SupervisorStatus>),
    /// Answer queued requests `Superseded`, stop the live unit gracefully and exit. Sent by
    /// the runtime (or a [`HibernatingSupervisor`](crate::HibernatingSupervisor)); answered
    /// once everything is stopped.
    Shutdown(RpcReplyPort<()>),
    /// Something below the live unit failed beyond its restart intensity (a crash loop).
    /// Within the probation window after an activation this reverts to the previous spec
    /// (`Reverted`); outside it, it is recorded in status. Sent by whatever restarts the
    /// children of the live unit; no reply.
    Escalate {
        /// What failed, and how.
        reason: String,
    },
    /// A message of the protocol itself, from a Candidate, the Active, a timer or a
    /// [`HibernatingSupervisor`](crate::HibernatingSupervisor). Only this crate makes them.
    Internal(Internal<U>),
}

// Specs and units need not be `Debug`: a message shows what it asks for and the ids and
// settings that go with it, which is what a log line needs.
impl<U: Unit> fmt::Debug for SupervisorMsg<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorMsg::Reload(request, _) => f
                .debug_struct("Reload")
                .field("origin", &request.origin)
                .field("expected_generation", &request.expected_generation)
                .finish_non_exhaustive(),
            SupervisorMsg::TryActivate(..) => f.debug_struct("TryActivate").finish_non_exhaustive(),
            SupervisorMsg::Prepare(_, hold_for, _) => f
                .debug_struct("Prepare")
                .field("hold_for", hold_for)
                .finish_non_exhaustive(),
            SupervisorMsg::Commit(request, _) => f.debug_tuple("Commit").field(request).finish(),
            SupervisorMsg::Abort(ticket, _) => f.debug_tuple("Abort").field(ticket).finish(),
            SupervisorMsg::Status(_) => f.write_str("Status"),
            SupervisorMsg::Shutdown(_) => f.write_str("Shutdown"),
            SupervisorMsg::Escalate { reason } => {
                f.debug_struct("Escalate").field("reason", reason).finish()
            }
            SupervisorMsg::Internal(internal) => f.debug_tuple("Internal").field(internal).finish(),
        }
    }
}

// ractor's `cluster` feature drops the blanket `Message` implementation; the protocol's
// messages stay local (they hold reply ports and units), so the default methods do.
#[cfg(feature = "cluster")]
impl<U: Unit> ractor::Message for SupervisorMsg<U> {}

/// A message of the swap protocol itself. Opaque: it can be passed along but not made or
/// opened outside this crate.
pub struct Internal<U: Unit> {
    pub(crate) message: InternalMsg<U>,
}

impl<U: Unit> fmt::Debug for Internal<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message.fmt(f)
    }
}

impl<U: Unit> SupervisorMsg<U> {
    /// Wraps one of the protocol's own messages.
    pub(crate) fn internal(message: InternalMsg<U>) -> Self {
        SupervisorMsg::Internal(Internal { message })
    }
}

/// The protocol's own messages. None is answered except `Hibernate`.
pub(crate) enum InternalMsg<U: Unit> {
    /// From a Candidate: the build of `request` finished (under its deadline, panics caught).
    /// No reply; the Candidate ends.
    CandidateBuilt {
        request: u64,
        result: Box<Result<U, BuildFailure>>,
        elapsed: Duration,
    },
    /// From a Candidate that ended without a result (cancelled, or a panic outside its guard):
    /// its request fails if anyone still waits for it. No reply.
    CandidateGone { request: u64, reason: String },
    /// From the Active: a swap finished. No reply; the request it was for is answered.
    SwapFinished(Box<SwapReport<U>>),
    /// From the Active: it drained and stopped everything, and exits. No reply; the shutdown
    /// callers are answered and the Supervisor exits.
    ActiveStopped,
    /// From the restore timer: the backoff has passed; try the last-known-good spec again.
    /// No reply.
    RetryRestore,
    /// From a prepared unit's timer: nobody committed or aborted it in time; drop it. No
    /// reply.
    PreparedExpired { ticket: u64 },
    /// From a [`HibernatingSupervisor`](crate::HibernatingSupervisor): exit, leaving the live
    /// unit published and running, and answer with what a later Supervisor needs to carry on.
    /// Answered `None` (and nothing happens) unless the Supervisor is idle.
    Hibernate(RpcReplyPort<Option<Resume<U>>>),
}

impl<U: Unit> fmt::Debug for InternalMsg<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InternalMsg::CandidateBuilt {
                request,
                result,
                elapsed,
            } => f
                .debug_struct("CandidateBuilt")
                .field("request", request)
                .field("result", &(**result).as_ref().map(|_| "built"))
                .field("elapsed", elapsed)
                .finish(),
            InternalMsg::CandidateGone { request, reason } => f
                .debug_struct("CandidateGone")
                .field("request", request)
                .field("reason", reason)
                .finish(),
            InternalMsg::SwapFinished(report) => {
                f.debug_tuple("SwapFinished").field(report).finish()
            }
            InternalMsg::ActiveStopped => f.write_str("ActiveStopped"),
            InternalMsg::RetryRestore => f.write_str("RetryRestore"),
            InternalMsg::PreparedExpired { ticket } => f
                .debug_struct("PreparedExpired")
                .field("ticket", ticket)
                .finish(),
            InternalMsg::Hibernate(_) => f.write_str("Hibernate"),
        }
    }
}

/// What the Active reports after a swap.
pub(crate) struct SwapReport<U: Unit> {
    pub(crate) request: u64,
    pub(crate) result: SwapResult,
    pub(crate) timings: StageTimings,
    pub(crate) spec: Arc<U::Spec>,
    pub(crate) settings: SwapSettings,
}

impl<U: Unit> fmt::Debug for SwapReport<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwapReport")
            .field("request", &self.request)
            .field("result", &self.result)
            .field("timings", &self.timings)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How a swap ended.
#[derive(Debug)]
pub(crate) enum SwapResult {
    Activated,
    RolledBack(String),
    Degraded {
        error: String,
        restore_error: String,
    },
}
