//! Where the Supervisor is with its current request, as one enum.
//!
//! The Supervisor works on at most one request at a time, and that request is either being
//! built (its Candidate runs) or being swapped in (the Active has its unit). Once it leaves, by
//! a shutdown or by hibernating, it takes up nothing new; a shutdown lets a swap already under
//! way finish and be answered truthfully, but abandons a build. [`Phase`] says exactly that, so
//! a request that is both building and swapping, or a build still under way while shutting
//! down, cannot be written down at all.
//!
//! ```text
//!            open               Candidate built           SwapFinished / rejected
//!   Idle ─────────────▶ Building ─────────────▶ Swapping ─────────────────────────▶ Idle
//!     │                    │ Shutdown              │ Shutdown
//!     │ Shutdown           ▼ (build superseded)    ▼
//!     └──────────────▶ ShuttingDown { swap: None | Some(the swap, until it finishes) }
//!   Idle ── Hibernate ──▶ Hibernating
//! ```
//!
//! Whether the slot is degraded is not a phase: a reload may build and swap while it is
//! (see [recovery](super::recovery)).

use std::fmt;

use ractor::RpcReplyPort;
use tokio::time::Instant;

use crate::outcome::{Origin, ReloadOutcome, ReloadRecord, StageTimings};
use crate::unit::Unit;

/// The request being worked on.
pub(super) struct InProgress {
    id: u64,
    origin: Origin,
    /// Why, for a revert.
    reason: Option<String>,
    reply: Option<RpcReplyPort<ReloadRecord>>,
    record: ReloadRecord,
    started: Instant,
    span: tracing::Span,
    /// The built unit's [`Unit::identity`], live once it activates.
    identity: Option<String>,
}

impl InProgress {
    /// Request `id` taken up now, at `generation`, with the span its work runs in.
    pub(super) fn open(
        id: u64,
        origin: Origin,
        reply: Option<RpcReplyPort<ReloadRecord>>,
        reason: Option<String>,
        generation: u64,
    ) -> Self {
        let span = tracing::info_span!(
            "reload",
            id,
            origin = ?origin,
            generation,
            config_hash = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        Self {
            id,
            origin,
            reason,
            reply,
            record: ReloadRecord::new(id, origin, ReloadOutcome::Superseded, generation),
            started: Instant::now(),
            span,
            identity: None,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn origin(&self) -> Origin {
        self.origin
    }

    pub(super) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Why it was asked for (a revert's escalation), or the empty string.
    pub(super) fn reason(&self) -> String {
        self.reason.clone().unwrap_or_default()
    }

    /// The built unit's fingerprint, once built.
    pub(super) fn fingerprint(&self) -> Option<String> {
        self.record.fingerprint.clone()
    }

    /// The built unit's identity, once built.
    pub(super) fn identity(&self) -> Option<String> {
        self.identity.clone()
    }

    /// Notes how long the build took.
    pub(super) fn built_in(&mut self, elapsed: std::time::Duration) {
        self.record.timings.build = Some(elapsed);
    }

    /// Notes what was built: its fingerprint (in the span too), changes and identity.
    pub(super) fn built<U: Unit>(&mut self, unit: &U) {
        let fingerprint = unit.fingerprint();
        self.span.record("config_hash", fingerprint.as_str());
        self.record.fingerprint = Some(fingerprint);
        self.record.changes = unit.changes();
        self.identity = unit.identity();
    }

    /// Takes the swap's stage timings, keeping the build's own.
    pub(super) fn swapped_in(&mut self, timings: StageTimings) {
        let build = self.record.timings.build;
        self.record.timings = StageTimings { build, ..timings };
    }

    /// Ends the request with `outcome` at `generation`: its record (total time taken), the
    /// span (outcome recorded) and who waits for the record.
    pub(super) fn finish(
        self,
        outcome: ReloadOutcome,
        generation: u64,
    ) -> (
        ReloadRecord,
        tracing::Span,
        Option<RpcReplyPort<ReloadRecord>>,
    ) {
        let mut record = self.record;
        record.outcome = outcome;
        record.generation = generation;
        record.timings.total = Some(self.started.elapsed());
        self.span.record("outcome", record.outcome.name());
        (record, self.span, self.reply)
    }

    /// Ends a build that a shutdown overtook: the record as it stood, `Superseded`.
    pub(super) fn superseded(self) -> (ReloadRecord, Option<RpcReplyPort<ReloadRecord>>) {
        let mut record = self.record;
        record.outcome = ReloadOutcome::Superseded;
        (record, self.reply)
    }
}

impl fmt::Debug for InProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProgress")
            .field("id", &self.id)
            .field("origin", &self.origin)
            .field("reason", &self.reason)
            .field("record", &self.record)
            .field("started", &self.started)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Where the Supervisor is with its current request.
#[derive(Debug)]
pub(super) enum Phase {
    /// Nothing under way: the next queued request, or a due restore, may begin.
    Idle,
    /// A Candidate builds the current request's unit.
    Building(InProgress),
    /// The Active swaps the current request's unit in.
    Swapping(InProgress),
    /// Shutting down: nothing new begins, and `callers` are answered once the Active has
    /// stopped. A swap that was under way finishes first (`swap`), and is answered truthfully.
    ShuttingDown {
        callers: Vec<RpcReplyPort<()>>,
        swap: Option<InProgress>,
    },
    /// Handed its state to a later Supervisor and exits; its Active leaves the live unit
    /// running. Nothing new begins.
    Hibernating,
}

impl Phase {
    /// True when nothing is under way and the Supervisor is staying: the next request may begin.
    pub(super) fn is_idle(&self) -> bool {
        matches!(self, Phase::Idle)
    }

    /// True once the Supervisor is shutting down or hibernating.
    pub(super) fn is_leaving(&self) -> bool {
        matches!(self, Phase::ShuttingDown { .. } | Phase::Hibernating)
    }

    /// The current request, building or swapping.
    pub(super) fn current(&self) -> Option<&InProgress> {
        match self {
            Phase::Building(current) | Phase::Swapping(current) => Some(current),
            Phase::ShuttingDown { swap, .. } => swap.as_ref(),
            Phase::Idle | Phase::Hibernating => None,
        }
    }

    /// Request `id`, if it is the current one and is being built.
    pub(super) fn building(&mut self, id: u64) -> Option<&mut InProgress> {
        match self {
            Phase::Building(current) if current.id == id => Some(current),
            _ => None,
        }
    }

    /// Request `id`, if it is the current one and is being swapped in.
    pub(super) fn swapping(&mut self, id: u64) -> Option<&mut InProgress> {
        match self {
            Phase::Swapping(current)
            | Phase::ShuttingDown {
                swap: Some(current),
                ..
            } if current.id == id => Some(current),
            _ => None,
        }
    }

    /// True while the Active has the current request's unit.
    pub(super) fn is_swapping(&self) -> bool {
        matches!(
            self,
            Phase::Swapping(_) | Phase::ShuttingDown { swap: Some(_), .. }
        )
    }

    /// The current request's unit went to the Active.
    pub(super) fn start_swap(&mut self) {
        if let Phase::Building(current) = std::mem::replace(self, Phase::Idle) {
            *self = Phase::Swapping(current);
        }
    }

    /// Ends the current request, whichever stage it is at; `None` when there is none. A
    /// Supervisor that is leaving stays leaving.
    pub(super) fn end(&mut self) -> Option<InProgress> {
        match std::mem::replace(self, Phase::Idle) {
            Phase::Building(current) | Phase::Swapping(current) => Some(current),
            Phase::ShuttingDown { callers, swap } => {
                *self = Phase::ShuttingDown {
                    callers,
                    swap: None,
                };
                swap
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// The shutdown callers still to answer (none once answered, or when hibernating).
    pub(super) fn take_callers(&mut self) -> Vec<RpcReplyPort<()>> {
        match self {
            Phase::ShuttingDown { callers, .. } => std::mem::take(callers),
            _ => Vec::new(),
        }
    }
}
