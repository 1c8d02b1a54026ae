//! [`TwoPhase`]: a reload of one runtime split in two, as a fleet reload runs it on each node.
//!
//! A fleet commits a config only once every node has built it, so each node's reload is split
//! where the Candidate reports built: **prepare** builds and holds the engine (touching
//! nothing, binding no port), then **commit** activates it as an ordinary reload that skips
//! the build, or **abort** drops it. The Supervisor already speaks these three messages
//! (`SupervisorMsg::Prepare`, `Commit`, `Abort`); this handle sends them, so that the
//! [`Runtime`]'s own surface stays the single-node one.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use swapvisor_actors::{BuildFailure, CommitRequest, Prepared, ReloadRecord, SupervisorMsg};

use crate::engine::{Engine, EngineSpec, EngineTypes};
use crate::runtime::{Runtime, RuntimeError};

/// The two phases of a reload of one runtime: [`prepare`](TwoPhase::prepare), then
/// [`commit`](TwoPhase::commit) or [`abort`](TwoPhase::abort). Cheap to clone; it addresses the
/// runtime's Supervisor, and answers [`RuntimeError::Stopped`] once that is gone.
///
/// ```
/// use std::time::Duration;
/// use swapvisor::fleet::TwoPhase;
/// use swapvisor::{CommitRequest, Registry, Runtime};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let one = "pipelines: { p: { steps: [{ name: s, type: step.set, config: { values: { v: 1 } } }] } }";
/// let runtime = Runtime::start(one, Registry::with_builtins()).await.unwrap();
/// let two_phase = TwoPhase::new(&runtime);
/// let two = one.replace("v: 1", "v: 2");
/// let prepared = two_phase.prepare(two.as_str(), Duration::from_secs(60)).await.unwrap().unwrap();
/// let record = two_phase.commit(CommitRequest::new(prepared.ticket)).await.unwrap();
/// assert!(record.outcome.is_activated());
/// runtime.shutdown().await.unwrap();
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct TwoPhase {
    supervisor: ActorRef<SupervisorMsg<Engine>>,
}

impl TwoPhase {
    /// The two phases of `runtime`'s reloads.
    pub fn new(runtime: &Runtime) -> Self {
        Self {
            supervisor: runtime.supervisor(),
        }
    }

    /// The first phase: builds `config` and holds the built engine, touching nothing (no port
    /// is bound), until [`TwoPhase::commit`] activates it, [`TwoPhase::abort`] drops it, or
    /// `hold_for` passes. Answers the ticket with the config's fingerprint and types, or why
    /// it does not build.
    pub async fn prepare(
        &self,
        config: impl Into<EngineSpec>,
        hold_for: Duration,
    ) -> Result<Result<Prepared<EngineTypes>, BuildFailure>, RuntimeError> {
        let spec = Arc::new(config.into());
        ractor::call!(self.supervisor, SupervisorMsg::Prepare, spec, hold_for)
            .map_err(|_| RuntimeError::Stopped)
    }

    /// The second phase: activates the engine prepared under `request.ticket`, as a reload
    /// that skips the build (serialized with other reloads, rolled back if it fails to start,
    /// `Unchanged` if it is the live config). A ticket no longer held is answered `Rejected`.
    pub async fn commit(&self, request: CommitRequest) -> Result<ReloadRecord, RuntimeError> {
        ractor::call!(self.supervisor, SupervisorMsg::Commit, request)
            .map_err(|_| RuntimeError::Stopped)
    }

    /// Drops the engine prepared under `ticket`; true when it was still held.
    pub async fn abort(&self, ticket: u64) -> Result<bool, RuntimeError> {
        ractor::call!(self.supervisor, SupervisorMsg::Abort, ticket)
            .map_err(|_| RuntimeError::Stopped)
    }
}
