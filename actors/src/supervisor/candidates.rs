//! Candidates: one per request, building a spec off the Supervisor's mailbox.
//!
//! The Supervisor spawns a Candidate task and goes on answering status. The Candidate reports
//! `CandidateBuilt`; for a reload the built unit then goes to the Active, for a try-activate it
//! is dropped after its summary is taken. A Candidate that ends without a result (cancelled at
//! shutdown, or a panic its guard did not see) reports `CandidateGone` instead, which fails
//! its request if anyone still waits for it.

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use super::SupervisorMsg;
use super::state::SupervisorState;
use crate::active::ActiveMsg;
use crate::candidate::{self, CandidateArgs};
use crate::outcome::{Origin, ReloadOutcome};
use crate::unit::{BuildFailure, Stage, Unit};

impl<U: Unit> SupervisorState<U> {
    /// Builds `spec` for a try-activate; the answer comes when the Candidate reports.
    pub(super) fn try_activate(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        spec: Arc<U::Spec>,
        reply: RpcReplyPort<Result<U::Summary, BuildFailure>>,
    ) {
        let id = self.take_id();
        let span = tracing::info_span!("try_activate", id);
        self.spawn_candidate(myself, id, spec, span);
        self.probes.insert(id, reply);
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
            timeout: self.build_timeout,
            unit_name: self.unit_name.clone(),
            supervisor: myself.clone(),
            span,
        };
        self.candidates.insert(id, candidate::spawn(args));
    }

    /// A Candidate reported: answer a try-activate, or hand a built unit to the Active.
    pub(super) fn candidate_built(
        &mut self,
        request: u64,
        result: Result<U, BuildFailure>,
        elapsed: Duration,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        self.candidates.remove(&request);
        if self.preparing.contains_key(&request) {
            self.prepare_built(request, result, elapsed, myself);
            return;
        }
        if let Some(reply) = self.probes.remove(&request) {
            // A try-activate: answer, and drop the unit. Building had no outside effects.
            let _ = reply.send(result.map(|unit| unit.summary()));
            return;
        }
        let Some(current) = self
            .current
            .as_mut()
            .filter(|c| c.id == request && !c.swapping)
        else {
            return; // a build nobody waits for any more (superseded by shutdown)
        };
        current.record.timings.build = Some(elapsed);
        let unit = match result {
            Ok(unit) => unit,
            Err(failure) => {
                if current.origin == Origin::Restore {
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
        let fingerprint = unit.fingerprint();
        current.span.record("config_hash", fingerprint.as_str());
        current.record.fingerprint = Some(fingerprint);
        current.record.changes = unit.changes();
        current.identity = unit.identity();
        // Restores and reverts always swap: they exist to replace what is (or is not) live.
        let unchanged = matches!(
            current.origin,
            Origin::Api | Origin::Admin | Origin::Watch | Origin::Signal | Origin::Fleet
        ) && !self.degraded
            && current.identity.is_some()
            && current.identity == self.live_identity
            && self.slot.current().is_some();
        if unchanged {
            // Built without outside effects, so dropping it is the whole teardown.
            drop(unit);
            let generation = self.generation;
            self.finish(ReloadOutcome::Unchanged { generation }, myself);
            return;
        }
        current.swapping = true;
        let generation = if current.origin == Origin::Restore {
            self.generation
        } else {
            self.generation + 1
        };
        let order = ActiveMsg::Swap {
            request,
            unit: Box::new(unit),
            generation,
            span: current.span.clone(),
        };
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
        self.candidates.remove(&request);
        let unreported = self.probes.contains_key(&request)
            || self.preparing.contains_key(&request)
            || self
                .current
                .as_ref()
                .is_some_and(|c| c.id == request && !c.swapping);
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
