//! Two-phase reloads: a unit built and held by `Prepare`, then activated by `Commit` or dropped
//! by `Abort` or its expiry.
//!
//! This is the single-node reload split where the Candidate reports built, which is what a
//! fleet reload needs from each node: every node builds and holds (no outside effects, since
//! building has none), and only when all of them could does each one swap. The commit goes
//! through the queue like any reload, so it is serialized with them, checked by
//! compare-and-swap, rolled back on a failed start, and `Unchanged` for the live spec; it only
//! skips the build. A held unit expires, so a coordinator that vanished between the phases
//! leaves nothing held for ever.

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use super::SupervisorMsg;
use super::messages::{CommitRequest, InternalMsg, Prepared, ReloadRequest};
use super::state::{Held, Prebuilt, Queued, SupervisorState};
use crate::outcome::{ReloadOutcome, ReloadRecord};
use crate::unit::{BuildFailure, Stage, Unit};

impl<U: Unit> SupervisorState<U> {
    /// Builds `spec` to hold it for `hold_for`; the answer comes when the Candidate reports.
    pub(super) fn prepare(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        spec: Arc<U::Spec>,
        hold_for: Duration,
        reply: RpcReplyPort<Result<Prepared<U::Summary>, BuildFailure>>,
    ) {
        if self.shutdown.is_some() {
            let _ = reply.send(Err(BuildFailure::new(
                Stage::Build,
                "the runtime is shutting down",
            )));
            return;
        }
        let id = self.take_id();
        let span = tracing::info_span!("prepare", id);
        self.spawn_candidate(myself, id, spec, span);
        self.preparing.insert(id, (hold_for, reply));
    }

    /// A prepare's Candidate reported: hold the unit and answer with its ticket.
    pub(super) fn prepare_built(
        &mut self,
        request: u64,
        result: Result<U, BuildFailure>,
        elapsed: Duration,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        let Some((hold_for, reply)) = self.preparing.remove(&request) else {
            return;
        };
        let unit = match result {
            Ok(unit) => unit,
            Err(failure) => {
                let _ = reply.send(Err(failure));
                return;
            }
        };
        let prepared = Prepared {
            ticket: request,
            fingerprint: unit.fingerprint(),
            summary: unit.summary(),
        };
        if reply.send(Ok(prepared)).is_err() {
            return; // nobody waits to commit it: drop it now
        }
        let expired = SupervisorMsg::internal(InternalMsg::PreparedExpired { ticket: request });
        let supervisor = myself.clone();
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(hold_for).await;
            let _ = supervisor.send_message(expired);
        });
        tracing::debug!(unit = %self.unit_name, ticket = request, "prepared a unit; holding it for its commit");
        self.prepared.insert(
            request,
            Held {
                unit: Prebuilt {
                    unit: Box::new(unit),
                    build: elapsed,
                },
                expiry,
            },
        );
    }

    /// Queues the commit of a held unit, or answers `Rejected` at once when it is not held.
    pub(super) fn commit(&mut self, request: CommitRequest, reply: RpcReplyPort<ReloadRecord>) {
        let id = self.take_id();
        let held = self.prepared.remove(&request.ticket);
        let Some(Held { unit, expiry }) = held.filter(|_| self.shutdown.is_none()) else {
            let outcome = if self.shutdown.is_some() {
                ReloadOutcome::Superseded
            } else {
                ReloadOutcome::Rejected {
                    stage: Stage::Build,
                    error: format!(
                        "no prepared {} is held under ticket {} (never prepared, aborted, expired or already committed)",
                        self.unit_name, request.ticket
                    ),
                }
            };
            let record = ReloadRecord::new(id, request.origin, outcome, self.generation);
            self.remember(&record);
            let _ = reply.send(record);
            return;
        };
        expiry.abort();
        let reload = ReloadRequest {
            spec: unit.unit.spec(),
            expected_generation: request.expected_generation,
            origin: request.origin,
        };
        self.queue.push_back(Queued {
            id,
            request: reload,
            reply: Some(reply),
            reason: None,
            prebuilt: Some(unit),
        });
    }

    /// Drops a held unit; true when it was held.
    pub(super) fn abort(&mut self, ticket: u64) -> bool {
        match self.prepared.remove(&ticket) {
            Some(held) => {
                held.expiry.abort();
                tracing::debug!(unit = %self.unit_name, ticket, "dropped a prepared unit (aborted)");
                true
            }
            None => false,
        }
    }

    /// A held unit's time ran out.
    pub(super) fn prepared_expired(&mut self, ticket: u64) {
        if self.prepared.remove(&ticket).is_some() {
            tracing::info!(unit = %self.unit_name, ticket, "a prepared unit expired uncommitted; dropped it");
        }
    }

    /// Drops every held unit and fails every prepare still building (shutdown).
    pub(super) fn drop_prepared(&mut self) {
        for (_, held) in self.prepared.drain() {
            held.expiry.abort();
        }
        for (_, (_, reply)) in self.preparing.drain() {
            let _ = reply.send(Err(BuildFailure::new(
                Stage::Build,
                "the runtime is shutting down",
            )));
        }
    }
}
