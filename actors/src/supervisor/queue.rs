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
use std::sync::Arc;

use ractor::{ActorRef, RpcReplyPort};
use tokio::time::Instant;

use super::SupervisorMsg;
use super::messages::ReloadRequest;
use super::state::{InProgress, Prebuilt, Queued, SupervisorState};
use crate::outcome::{Origin, ReloadOutcome, ReloadRecord};
use crate::unit::Unit;

impl<U: Unit> SupervisorState<U> {
    /// Queues a reload, or answers it `Superseded` at once when the Supervisor is leaving.
    pub(super) fn enqueue(
        &mut self,
        request: ReloadRequest<U::Spec>,
        reply: RpcReplyPort<ReloadRecord>,
    ) {
        let id = self.take_id();
        if self.shutdown.is_some() {
            let record = ReloadRecord::new(
                id,
                request.origin,
                ReloadOutcome::Superseded,
                self.generation,
            );
            let _ = reply.send(record);
            return;
        }
        if request.origin.coalesces() {
            self.supersede_queued_coalescing();
        }
        self.queue.push_back(Queued {
            id,
            request,
            reply: Some(reply),
            reason: None,
            prebuilt: None,
        });
    }

    /// Answers every queued coalescing request `Superseded`: a newer one replaces them.
    fn supersede_queued_coalescing(&mut self) {
        let (replaced, kept): (VecDeque<_>, VecDeque<_>) = self
            .queue
            .drain(..)
            .partition(|q| q.request.origin.coalesces());
        self.queue = kept;
        for queued in replaced {
            self.answer_unstarted(queued, ReloadOutcome::Superseded);
        }
    }

    /// Records and answers a request that never started (superseded, conflicting).
    pub(super) fn answer_unstarted(&mut self, queued: Queued<U>, outcome: ReloadOutcome) {
        let record = ReloadRecord::new(queued.id, queued.request.origin, outcome, self.generation);
        self.remember(&record);
        if let Some(reply) = queued.reply {
            let _ = reply.send(record);
        }
    }

    /// Takes up the next request, if nothing is under way: a queued reload first, else a
    /// pending restore.
    pub(super) async fn pump(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        while self.current.is_none() && self.shutdown.is_none() {
            let Some(queued) = self.queue.pop_front() else {
                self.start_restore_if_due(myself).await;
                return;
            };
            if let Some(expected) = queued.request.expected_generation
                && expected != self.generation
            {
                let current = self.generation;
                self.answer_unstarted(queued, ReloadOutcome::Conflict { expected, current });
                continue;
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
        self.candidate_built(id, Ok(*prebuilt.unit), prebuilt.build, myself);
    }

    /// Makes request `id` the current one; returns its span.
    fn open(
        &mut self,
        id: u64,
        origin: Origin,
        reply: Option<RpcReplyPort<ReloadRecord>>,
        reason: Option<String>,
    ) -> tracing::Span {
        let span = tracing::info_span!(
            "reload",
            id,
            origin = ?origin,
            generation = self.generation,
            config_hash = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        self.current = Some(InProgress {
            id,
            origin,
            reason,
            reply,
            record: ReloadRecord::new(id, origin, ReloadOutcome::Superseded, self.generation),
            started: Instant::now(),
            span: span.clone(),
            identity: None,
            swapping: false,
        });
        span
    }
}
