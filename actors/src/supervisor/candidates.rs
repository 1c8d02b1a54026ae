//! Candidates: one per request, building a spec off the Supervisor's mailbox.
//!
//! The Supervisor spawns a Candidate task and goes on answering status. The Candidate reports
//! `CandidateBuilt`; for a reload the built unit then goes to the Active, for a try-activate it
//! is dropped after its summary is taken. A Candidate that ends without a result (cancelled at
//! shutdown, or a panic its guard did not see) reports `CandidateGone` instead, which fails
//! its request if anyone still waits for it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use tokio::task::AbortHandle;

use super::SupervisorMsg;
use super::state::SupervisorState;
use crate::active::ActiveMsg;
use crate::candidate::{self, CandidateArgs};
use crate::outcome::{Origin, ReloadOutcome};
use crate::unit::{BuildFailure, Stage, Unit};

/// Who waits for a try-activate's answer.
type ProbeReply<U> = RpcReplyPort<Result<<U as Unit>::Summary, BuildFailure>>;

/// The Candidates building, and the try-activates waiting for theirs.
pub(super) struct Candidates<U: Unit> {
    /// Candidates building, by the request each builds for: aborting one cancels its build.
    building: HashMap<u64, AbortHandle>,
    /// Try-activates waiting for their Candidate, by request id.
    probes: HashMap<u64, ProbeReply<U>>,
}

impl<U: Unit> Candidates<U> {
    pub(super) fn new() -> Self {
        Self {
            building: HashMap::new(),
            probes: HashMap::new(),
        }
    }

    /// How many Candidates are building.
    pub(super) fn building(&self) -> usize {
        self.building.len()
    }

    /// True while a try-activate waits for its Candidate.
    pub(super) fn has_probes(&self) -> bool {
        !self.probes.is_empty()
    }

    /// Cancels the build for request `id`, if one runs.
    pub(super) fn cancel(&mut self, id: u64) {
        if let Some(candidate) = self.building.remove(&id) {
            candidate.abort();
        }
    }

    /// Cancels every build (the Supervisor exits).
    pub(super) fn cancel_all(&mut self) {
        for (_, candidate) in self.building.drain() {
            candidate.abort();
        }
    }

    /// Answers every try-activate still waiting: the runtime is shutting down.
    pub(super) fn fail_probes(&mut self) {
        for (_, reply) in self.probes.drain() {
            let _ = reply.send(Err(super::shutdown::shutting_down()));
        }
    }
}

impl<U: Unit> fmt::Debug for Candidates<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidates")
            .field("building", &self.building.keys().collect::<Vec<_>>())
            .field("probes", &self.probes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<U: Unit> SupervisorState<U> {
    /// Builds `spec` for a try-activate; the answer comes when the Candidate reports.
    pub(super) fn try_activate(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        spec: Arc<U::Spec>,
        reply: ProbeReply<U>,
    ) {
        let id = self.take_id();
        let span = tracing::info_span!("try_activate", id);
        self.spawn_candidate(myself, id, spec, span);
        self.candidates.probes.insert(id, reply);
    }

    /// Spawns the Candidate that builds `spec` for request `id`.
    pub(super) fn spawn_candidate(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        id: u64,
        spec: Arc<U::Spec>,
        span: tracing::Span,
    ) {
        let args = CandidateArgs {
            request: id,
            spec,
            context: self.context.clone(),
            timeout: self.lineage.build_timeout(),
            unit_name: self.unit_name.clone(),
            supervisor: myself.clone(),
            span,
        };
        self.candidates.building.insert(id, candidate::spawn(args));
    }

    /// A Candidate reported: answer a try-activate, or hand a built unit to the Active.
    pub(super) fn candidate_built(
        &mut self,
        request: u64,
        result: Result<U, BuildFailure>,
        elapsed: Duration,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        self.candidates.building.remove(&request);
        if self.prepares.is_building(request) {
            self.prepare_built(request, result, elapsed, myself);
            return;
        }
        if let Some(reply) = self.candidates.probes.remove(&request) {
            // A try-activate: answer, and drop the unit. Building had no outside effects.
            let _ = reply.send(result.map(|unit| unit.summary()));
            return;
        }
        let Some(current) = self.phase.building(request) else {
            return; // a build nobody waits for any more (superseded by shutdown)
        };
        current.built_in(elapsed);
        let unit = match result {
            Ok(unit) => unit,
            Err(failure) => {
                if current.origin() == Origin::Restore {
                    tracing::warn!(unit = %self.unit_name, error = %failure, "restore failed to build; retrying later");
                    self.restore_failed(myself);
                    return;
                }
                let outcome = ReloadOutcome::Rejected {
                    stage: failure.stage,
                    error: failure.message,
                };
                self.finish(outcome, myself);
                return;
            }
        };
        current.built(&unit);
        // Restores and reverts always swap: they exist to replace what is (or is not) live.
        let unchanged = matches!(
            current.origin(),
            Origin::Api | Origin::Admin | Origin::Watch | Origin::Signal | Origin::Fleet
        ) && !self.recovery.is_degraded()
            && self.lineage.is_live(current.identity().as_deref())
            && self.slot.current().is_some();
        if unchanged {
            // Built without outside effects, so dropping it is the whole teardown.
            drop(unit);
            let generation = self.lineage.generation();
            self.finish(ReloadOutcome::Unchanged { generation }, myself);
            return;
        }
        let order = ActiveMsg::Swap {
            request,
            unit: Box::new(unit),
            generation: self.lineage.next_generation(current.origin()),
            span: current.span().clone(),
        };
        self.phase.start_swap();
        if self.active.send_message(order).is_err() {
            let error = format!("the {} Active actor is not running", self.unit_name);
            self.finish(ReloadOutcome::RolledBack { error }, myself);
        }
    }

    /// A Candidate ended without a result; fails its request if anyone still waits for it.
    pub(super) fn candidate_gone(
        &mut self,
        request: u64,
        reason: String,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        self.candidates.building.remove(&request);
        let unreported = self.candidates.probes.contains_key(&request)
            || self.prepares.is_building(request)
            || self.phase.building(request).is_some();
        if unreported {
            let failure = BuildFailure::new(
                Stage::Build,
                format!(
                    "the {} candidate exited without a result: {reason}",
                    self.unit_name
                ),
            );
            self.candidate_built(request, Err(failure), Duration::ZERO, myself);
        }
    }
}
