//! The queue: one request at a time, in order of arrival, with coalescing and compare-and-swap.
//!
//! Reloads are serialized because the Supervisor takes up the next request only when the
//! current one has an outcome. While one runs, the others wait here:
//!
//! - requests from the file watcher and from signals **coalesce**: a new one answers every
//!   queued one of those `Superseded`, so only the latest content is applied;
//! - a request that **expects a generation** is checked when its turn comes, against the
//!   generation at that moment, and answered `Conflict` (nothing touched) on a mismatch;
//! - a **revert** goes to the front: the live unit is known to be failing.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use ractor::{ActorRef, RpcReplyPort};

use super::SupervisorMsg;
use super::messages::ReloadRequest;
use super::phase::{InProgress, Phase};
use super::prepared::Prebuilt;
use super::state::SupervisorState;
use crate::outcome::{Origin, ReloadOutcome, ReloadRecord};
use crate::unit::Unit;

/// A request waiting for its turn.
pub(super) struct Queued<U: Unit> {
    id: u64,
    request: ReloadRequest<U::Spec>,
    reply: Option<RpcReplyPort<ReloadRecord>>,
    /// Why, for a revert.
    reason: Option<String>,
    /// For a commit: the unit prepared for it, swapped in without building again.
    prebuilt: Option<Prebuilt<U>>,
}

impl<U: Unit> Queued<U> {
    /// Request `id`, answered on `reply` (nobody waits for a revert).
    pub(super) fn new(
        id: u64,
        request: ReloadRequest<U::Spec>,
        reply: Option<RpcReplyPort<ReloadRecord>>,
    ) -> Self {
        Self {
            id,
            request,
            reply,
            reason: None,
            prebuilt: None,
        }
    }

    /// The same request, asked for because of `reason` (a revert's escalation).
    pub(super) fn because(mut self, reason: String) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The same request, swapping in `prebuilt` instead of building its spec (a commit).
    pub(super) fn prebuilt(mut self, prebuilt: Prebuilt<U>) -> Self {
        self.prebuilt = Some(prebuilt);
        self
    }
}

impl<U: Unit> fmt::Debug for Queued<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queued")
            .field("id", &self.id)
            .field("origin", &self.request.origin)
            .field("expected_generation", &self.request.expected_generation)
            .field("reason", &self.reason)
            .field("prebuilt", &self.prebuilt.is_some())
            .finish_non_exhaustive()
    }
}

/// The requests waiting for their turn, in order.
pub(super) struct Queue<U: Unit> {
    waiting: VecDeque<Queued<U>>,
}

impl<U: Unit> Queue<U> {
    pub(super) fn new() -> Self {
        Self {
            waiting: VecDeque::new(),
        }
    }

    /// Queues `queued` last.
    pub(super) fn push_back(&mut self, queued: Queued<U>) {
        self.waiting.push_back(queued);
    }

    /// Queues `queued` first: it goes before anything waiting.
    pub(super) fn push_front(&mut self, queued: Queued<U>) {
        self.waiting.push_front(queued);
    }

    /// How many requests wait.
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes every waiting request out, in order.
    pub(super) fn take_all(&mut self) -> Vec<Queued<U>> {
        self.waiting.drain(..).collect()
    }

    /// Takes out the waiting requests whose origin coalesces, keeping the others in order.
    fn take_coalescing(&mut self) -> VecDeque<Queued<U>> {
        let (replaced, kept): (VecDeque<_>, VecDeque<_>) = self
            .waiting
            .drain(..)
            .partition(|q| q.request.origin.coalesces());
        self.waiting = kept;
        replaced
    }
}

impl<U: Unit> fmt::Debug for Queue<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.waiting).finish()
    }
}

impl<U: Unit> SupervisorState<U> {
    /// Queues a reload, or answers it `Superseded` at once when the Supervisor is leaving.
    pub(super) fn enqueue(
        &mut self,
        request: ReloadRequest<U::Spec>,
        reply: RpcReplyPort<ReloadRecord>,
    ) {
        let id = self.take_id();
        if self.phase.is_leaving() {
            let record = ReloadRecord::new(
                id,
                request.origin,
                ReloadOutcome::Superseded,
                self.lineage.generation(),
            );
            let _ = reply.send(record);
            return;
        }
        if request.origin.coalesces() {
            // A newer one replaces them.
            for queued in self.queue.take_coalescing() {
                self.answer_unstarted(queued, ReloadOutcome::Superseded);
            }
        }
        self.queue.push_back(Queued::new(id, request, Some(reply)));
    }

    /// Records and answers a request that never started (superseded, conflicting).
    pub(super) fn answer_unstarted(&mut self, queued: Queued<U>, outcome: ReloadOutcome) {
        let record = ReloadRecord::new(
            queued.id,
            queued.request.origin,
            outcome,
            self.lineage.generation(),
        );
        self.history.remember(&record);
        if let Some(reply) = queued.reply {
            let _ = reply.send(record);
        }
    }

    /// Takes up the next request, if nothing is under way: a queued reload first, else a
    /// pending restore.
    pub(super) async fn pump(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        while self.phase.is_idle() {
            let Some(queued) = self.queue.waiting.pop_front() else {
                self.start_restore_if_due(myself).await;
                return;
            };
            let current = self.lineage.generation();
            if let Some(expected) = queued.request.expected_generation {
                if expected != current {
                    self.answer_unstarted(queued, ReloadOutcome::Conflict { expected, current });
                    continue;
                }
            }
            let Queued {
                id,
                request,
                reply,
                reason,
                prebuilt,
            } = queued;
            match prebuilt {
                Some(prebuilt) => self.begin_prebuilt(myself, id, request.origin, prebuilt, reply),
                None => {
                    self.begin(myself, id, request.origin, request.spec, reply, reason)
                        .await
                }
            }
        }
    }

    /// Makes request `id` the current one and spawns the Candidate that builds its spec.
    pub(super) async fn begin(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        id: u64,
        origin: Origin,
        spec: Arc<U::Spec>,
        reply: Option<RpcReplyPort<ReloadRecord>>,
        reason: Option<String>,
    ) {
        let span = self.open(id, origin, reply, reason);
        self.spawn_candidate(myself, id, spec, span);
    }

    /// Makes commit `id` the current request and goes on as if its Candidate had just
    /// reported the unit it prepared.
    fn begin_prebuilt(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        id: u64,
        origin: Origin,
        prebuilt: Prebuilt<U>,
        reply: Option<RpcReplyPort<ReloadRecord>>,
    ) {
        self.open(id, origin, reply, None);
        let (unit, build) = prebuilt.into_parts();
        self.candidate_built(id, Ok(unit), build, myself);
    }

    /// Makes request `id` the current one; returns its span.
    fn open(
        &mut self,
        id: u64,
        origin: Origin,
        reply: Option<RpcReplyPort<ReloadRecord>>,
        reason: Option<String>,
    ) -> tracing::Span {
        let current = InProgress::open(id, origin, reply, reason, self.lineage.generation());
        let span = current.span().clone();
        self.phase = Phase::Building(current);
        span
    }
}
