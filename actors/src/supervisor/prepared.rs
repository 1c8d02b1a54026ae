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

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use super::SupervisorMsg;
use super::messages::{CommitRequest, InternalMsg, Prepared, ReloadRequest};
use super::queue::Queued;
use super::state::SupervisorState;
use crate::outcome::{ReloadOutcome, ReloadRecord};
use crate::unit::{BuildFailure, Stage, Unit};

/// Who waits for a prepare's ticket.
type TicketReply<U> = RpcReplyPort<Result<Prepared<<U as Unit>::Summary>, BuildFailure>>;

/// A unit built ahead of its reload, and how long the build took.
pub(super) struct Prebuilt<U> {
    unit: Box<U>,
    build: Duration,
}

impl<U> Prebuilt<U> {
    /// The unit, and how long its build took.
    pub(super) fn into_parts(self) -> (U, Duration) {
        (*self.unit, self.build)
    }
}

impl<U> fmt::Debug for Prebuilt<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prebuilt")
            .field("build", &self.build)
            .finish_non_exhaustive()
    }
}

/// A prepared unit waiting for its commit or abort, and the timer that drops it.
struct Held<U> {
    unit: Prebuilt<U>,
    expiry: tokio::task::JoinHandle<()>,
}

impl<U> fmt::Debug for Held<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("unit", &self.unit)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// The prepares of a Supervisor: those whose Candidate builds, and the units held for a commit.
pub(super) struct Prepares<U: Unit> {
    /// Prepares waiting for their Candidate, by request id: how long to hold the unit, and who
    /// waits for the ticket.
    building: HashMap<u64, (Duration, TicketReply<U>)>,
    /// Prepared units waiting for a commit or an abort, by ticket.
    held: HashMap<u64, Held<U>>,
}

impl<U: Unit> Prepares<U> {
    pub(super) fn new() -> Self {
        Self {
            building: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// True while request `id` is a prepare waiting for its Candidate.
    pub(super) fn is_building(&self, id: u64) -> bool {
        self.building.contains_key(&id)
    }

    /// How many units are held for their commit.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// Nothing building, nothing held.
    pub(super) fn is_empty(&self) -> bool {
        self.building.is_empty() && self.held.is_empty()
    }

    /// Takes held unit `ticket` out, stopping its expiry.
    fn take(&mut self, ticket: u64) -> Option<Prebuilt<U>> {
        let held = self.held.remove(&ticket)?;
        held.expiry.abort();
        Some(held.unit)
    }

    /// Drops every held unit and fails every prepare still building (shutdown).
    pub(super) fn drop_all(&mut self) {
        for (_, held) in self.held.drain() {
            held.expiry.abort();
        }
        for (_, (_, reply)) in self.building.drain() {
            let _ = reply.send(Err(super::shutdown::shutting_down()));
        }
    }
}

impl<U: Unit> fmt::Debug for Prepares<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let building: Vec<_> = self
            .building
            .iter()
            .map(|(id, (hold, _))| (id, hold))
            .collect();
        f.debug_struct("Prepares")
            .field("building", &building)
            .field("held", &self.held)
            .finish()
    }
}

impl<U: Unit> SupervisorState<U> {
    /// Builds `spec` to hold it for `hold_for`; the answer comes when the Candidate reports.
    pub(super) fn prepare(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        spec: Arc<U::Spec>,
        hold_for: Duration,
        reply: RpcReplyPort<Result<Prepared<U::Summary>, BuildFailure>>,
    ) {
        if self.phase.is_leaving() {
            let _ = reply.send(Err(super::shutdown::shutting_down()));
            return;
        }
        let id = self.take_id();
        let span = tracing::info_span!("prepare", id);
        self.spawn_candidate(myself, id, spec, span);
        self.prepares.building.insert(id, (hold_for, reply));
    }

    /// A prepare's Candidate reported: hold the unit and answer with its ticket.
    pub(super) fn prepare_built(
        &mut self,
        request: u64,
        result: Result<U, BuildFailure>,
        elapsed: Duration,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
        let Some((hold_for, reply)) = self.prepares.building.remove(&request) else {
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
        self.prepares.held.insert(
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
        let held = self.prepares.take(request.ticket);
        let Some(unit) = held.filter(|_| !self.phase.is_leaving()) else {
            let outcome = if self.phase.is_leaving() {
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
            let generation = self.lineage.generation();
            let record = ReloadRecord::new(id, request.origin, outcome, generation);
            self.history.remember(&record);
            let _ = reply.send(record);
            return;
        };
        let reload = ReloadRequest {
            spec: unit.unit.spec(),
            expected_generation: request.expected_generation,
            origin: request.origin,
        };
        self.queue
            .push_back(Queued::new(id, reload, Some(reply)).prebuilt(unit));
    }

    /// Drops a held unit; true when it was held.
    pub(super) fn abort(&mut self, ticket: u64) -> bool {
        match self.prepares.take(ticket) {
            Some(_) => {
                tracing::debug!(unit = %self.unit_name, ticket, "dropped a prepared unit (aborted)");
                true
            }
            None => false,
        }
    }

    /// A held unit's time ran out.
    pub(super) fn prepared_expired(&mut self, ticket: u64) {
        if self.prepares.held.remove(&ticket).is_some() {
            tracing::info!(unit = %self.unit_name, ticket, "a prepared unit expired uncommitted; dropped it");
        }
    }
}
