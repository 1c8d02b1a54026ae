//! The Supervisor: one per slot; every reload, try-activate and status request passes through
//! its mailbox.
//!
//! Reloads are serialized by construction: the Supervisor takes up one request at a time and
//! keeps the rest in a queue (requests from the file watcher and from signals coalesce, so
//! only the latest of those waits). It never does slow work in its own handler. A Candidate
//! builds each spec and reports back by message; the Active swaps the built unit in and reports
//! back by message. Meanwhile the Supervisor answers status at once.
//!
//! It owns the generation counter, the last-known-good spec and the reload history, and turns
//! every request into exactly one [`ReloadOutcome`].
//!
//! | message | sent by | reply |
//! |---|---|---|
//! | [`SupervisorMsg::Reload`] | the runtime, the admin API, embedders (`call!`) | a [`ReloadRecord`] once the request is done |
//! | [`SupervisorMsg::TryActivate`] | the same | the unit's summary, or the build failure |
//! | [`SupervisorMsg::Status`] | anyone | a [`SupervisorStatus`] snapshot, at once |
//! | [`SupervisorMsg::Shutdown`] | the runtime | `()` once the live unit is stopped |

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use serde::Serialize;
use tokio::time::Instant;

use crate::active::{Active, ActiveArgs, ActiveMsg};
use crate::candidate::{Candidate, CandidateArgs};
use crate::outcome::{Origin, ReloadOutcome, ReloadRecord, StageTimings};
use crate::slot::Slot;
use crate::unit::{BuildFailure, Stage, SwapSettings, Unit};

/// The Supervisor actor of one slot. Spawn it with [`Supervisor::spawn_for`].
pub struct Supervisor<U>(PhantomData<fn() -> U>);

impl<U> Default for Supervisor<U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

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
    pub fn new(spec: impl Into<Arc<S>>) -> Self {
        Self {
            spec: spec.into(),
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

/// Messages to the Supervisor.
pub enum SupervisorMsg<U: Unit> {
    /// Activate a spec. Sent by the runtime, the admin API or an embedder; answered with the
    /// record of the request once it has an outcome (`Superseded` if a newer coalescing request
    /// or a shutdown replaced it first).
    Reload(ReloadRequest<U::Spec>, RpcReplyPort<ReloadRecord>),
    /// Build a spec and report whether it builds, without touching the live unit. Answered with
    /// the unit's summary or the build failure; the candidate is torn down either way.
    TryActivate(Arc<U::Spec>, RpcReplyPort<Result<U::Summary, BuildFailure>>),
    /// A snapshot of the Supervisor's state; answered at once, even while a reload runs.
    Status(RpcReplyPort<SupervisorStatus>),
    /// Answer queued requests `Superseded`, stop the live unit gracefully and exit. Answered
    /// once everything is stopped.
    Shutdown(RpcReplyPort<()>),
    /// Exit, leaving the live unit published and running, and hand back what a later
    /// Supervisor needs to carry on ([`SupervisorArgs::resume`]). Answered `None` (and nothing
    /// happens) while a request is under way or queued, or while degraded. Used to keep idle
    /// slots cheap: their actors exist only while a reload needs them.
    Hibernate(RpcReplyPort<Option<Resume<U>>>),
    /// Something below the live unit failed beyond its restart intensity (a plugin crash loop).
    /// Within the probation window after an activation this reverts to the previous spec
    /// (`Reverted`); outside it, it is recorded in status. Sent by the runtime's plugin
    /// supervisor; no reply.
    Escalate {
        /// What failed, and how.
        reason: String,
    },
    /// From a Candidate: the build of `request` finished. Not for embedders.
    #[doc(hidden)]
    CandidateBuilt {
        /// The request the build was for.
        request: u64,
        /// The unit, or why it failed.
        result: Box<Result<U, BuildFailure>>,
        /// How long the build took.
        elapsed: Duration,
    },
    /// From the Supervisor itself: a candidate exited; fail its request if it never reported.
    /// Not for embedders.
    #[doc(hidden)]
    CandidateGone {
        /// The request the candidate was building for.
        request: u64,
        /// Why it exited.
        reason: String,
    },
    /// From the Active: a swap finished. Not for embedders.
    #[doc(hidden)]
    SwapFinished(Box<SwapReport<U>>),
    /// From the Active: shutdown finished. Not for embedders.
    #[doc(hidden)]
    ActiveStopped,
    /// From a timer: try to restore the last-known-good spec. Not for embedders.
    #[doc(hidden)]
    RetryRestore,
}

/// What the Active reports after a swap. Opaque outside this crate.
#[doc(hidden)]
pub struct SwapReport<U: Unit> {
    pub(crate) request: u64,
    pub(crate) result: SwapResult,
    pub(crate) timings: StageTimings,
    pub(crate) spec: Arc<U::Spec>,
    pub(crate) settings: SwapSettings,
}

pub(crate) enum SwapResult {
    Activated,
    RolledBack(String),
    Degraded {
        error: String,
        restore_error: String,
    },
}

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Nothing has been activated yet.
    Starting,
    /// A unit serves and no reload is under way.
    Running,
    /// A reload is under way; the previous unit serves meanwhile (start-first).
    Reloading,
    /// Nothing serves after a failed stop-first swap; restores are being retried.
    Degraded,
    /// Shutting down.
    Stopping,
}

/// A snapshot of a Supervisor.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorStatus {
    /// The state.
    pub state: RunState,
    /// The current generation: how many reloads have activated (0 before the first).
    pub generation: u64,
    /// The fingerprint of the current generation's spec.
    pub fingerprint: Option<String>,
    /// The most recent reload.
    pub last_reload: Option<ReloadRecord>,
    /// The most recent reloads, oldest first.
    pub history: Vec<ReloadRecord>,
    /// Requests waiting for their turn.
    pub queued: usize,
    /// Linked child actors alive now: the Active, plus any Candidate still building.
    pub child_actors: usize,
    /// Failed restore attempts since the runtime became degraded.
    pub restore_attempts: u32,
    /// Escalations received (crash loops below the live unit).
    pub escalations: u32,
    /// The most recent escalation's reason.
    pub last_escalation: Option<String>,
}

/// Told about every finished reload (metrics, probation).
pub trait ReloadObserver: Send + Sync + 'static {
    /// Called once per outcome, in order, from the Supervisor.
    fn reload_finished(&self, record: &ReloadRecord);
}

/// Backoff between restore attempts while degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based): doubling from `initial`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// A hibernated Supervisor's state: enough for a new Supervisor to carry on where it left off.
pub struct Resume<U: Unit> {
    generation: u64,
    known_good: Option<Arc<U::Spec>>,
    previous_good: Option<Arc<U::Spec>>,
    fingerprint: Option<String>,
    build_timeout: Duration,
    history: VecDeque<ReloadRecord>,
    next_id: u64,
}

impl<U: Unit> Resume<U> {
    /// The generation the slot was at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The most recent reload.
    pub fn last_reload(&self) -> Option<&ReloadRecord> {
        self.history.back()
    }
}

/// What a Supervisor is spawned with.
pub struct SupervisorArgs<U: Unit> {
    /// The unit's name in errors and logs, such as `engine` or `plugin "hits"`.
    pub unit_name: String,
    /// What every build gets.
    pub context: Arc<U::Context>,
    /// The slot the Active publishes to; callers take leases from it.
    pub slot: Arc<Slot<U>>,
    /// Build timeout until the first unit is live (then each live unit's own setting applies).
    pub build_timeout: Duration,
    /// How many records `history` keeps.
    pub history_limit: usize,
    /// Backoff between restore attempts while degraded.
    pub restore_backoff: Backoff,
    /// Told about every outcome.
    pub observer: Option<Arc<dyn ReloadObserver>>,
    /// Carry on from a hibernated Supervisor (the slot's live unit is adopted as it is).
    pub resume: Option<Resume<U>>,
}

struct Queued<U: Unit> {
    id: u64,
    request: ReloadRequest<U::Spec>,
    reply: Option<RpcReplyPort<ReloadRecord>>,
    /// Why, for a revert.
    reason: Option<String>,
}

/// The request being worked on.
struct InProgress {
    id: u64,
    origin: Origin,
    reason: Option<String>,
    reply: Option<RpcReplyPort<ReloadRecord>>,
    record: ReloadRecord,
    started: Instant,
    span: tracing::Span,
    candidate: Option<ActorCell>,
    /// Set once the Active has the unit.
    swapping: bool,
}

/// The Supervisor's state. Opaque.
pub struct SupervisorState<U: Unit> {
    unit_name: Arc<str>,
    context: Arc<U::Context>,
    slot: Arc<Slot<U>>,
    active: ActorRef<ActiveMsg<U>>,
    generation: u64,
    known_good: Option<Arc<U::Spec>>,
    /// The spec that was live before the current one (the revert target).
    previous_good: Option<Arc<U::Spec>>,
    /// When the current generation activated, while its probation window is open.
    probation_until: Option<Instant>,
    escalations: u32,
    last_escalation: Option<String>,
    fingerprint: Option<String>,
    build_timeout: Duration,
    degraded: bool,
    history: VecDeque<ReloadRecord>,
    history_limit: usize,
    queue: VecDeque<Queued<U>>,
    current: Option<InProgress>,
    probes: HashMap<u64, RpcReplyPort<Result<U::Summary, BuildFailure>>>,
    candidates: HashMap<ActorId, u64>,
    next_id: u64,
    restore_backoff: Backoff,
    restore_attempts: u32,
    /// The pending restore: aborting this handle cancels the timer itself.
    restore_timer:
        Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<SupervisorMsg<U>>>>>,
    observer: Option<Arc<dyn ReloadObserver>>,
    /// Set once the Supervisor is leaving (shutdown or hibernation): the callers to answer
    /// when the Active has stopped.
    shutdown: Option<Vec<RpcReplyPort<()>>>,
}

impl<U: Unit> Supervisor<U> {
    /// Spawns a Supervisor (and its Active) with `args`. Nothing is live until the first
    /// `Reload` activates.
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
        let unit_name: Arc<str> = Arc::from(args.unit_name);
        let active = spawn_active(&myself, &args.slot, &unit_name).await?;
        let mut resume = args.resume;
        let history = resume
            .as_mut()
            .map(|r| std::mem::take(&mut r.history))
            .unwrap_or_default();
        Ok(SupervisorState {
            unit_name,
            context: args.context,
            slot: args.slot,
            active,
            generation: resume.as_ref().map_or(0, |r| r.generation),
            known_good: resume.as_ref().and_then(|r| r.known_good.clone()),
            previous_good: resume.as_ref().and_then(|r| r.previous_good.clone()),
            probation_until: None,
            escalations: 0,
            last_escalation: None,
            fingerprint: resume.as_ref().and_then(|r| r.fingerprint.clone()),
            build_timeout: resume
                .as_ref()
                .map_or(args.build_timeout, |r| r.build_timeout),
            degraded: false,
            history,
            history_limit: args.history_limit.max(1),
            queue: VecDeque::new(),
            current: None,
            probes: HashMap::new(),
            candidates: HashMap::new(),
            next_id: resume.as_ref().map_or(1, |r| r.next_id),
            restore_backoff: args.restore_backoff,
            restore_attempts: 0,
            restore_timer: None,
            observer: args.observer,
            shutdown: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Reload(request, reply) => {
                let id = state.take_id();
                if state.shutdown.is_some() {
                    let record = ReloadRecord::new(
                        id,
                        request.origin,
                        ReloadOutcome::Superseded,
                        state.generation,
                    );
                    let _ = reply.send(record);
                    return Ok(());
                }
                if request.origin.coalesces() {
                    state.supersede_queued_coalescing();
                }
                state.queue.push_back(Queued {
                    id,
                    request,
                    reply: Some(reply),
                    reason: None,
                });
            }
            SupervisorMsg::TryActivate(spec, reply) => {
                let id = state.take_id();
                let span = tracing::info_span!("try_activate", id);
                match state.spawn_candidate(&myself, id, spec, span).await {
                    Ok(_) => {
                        state.probes.insert(id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(BuildFailure::new(Stage::Build, error)));
                    }
                }
            }
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(state.status(&myself));
            }
            SupervisorMsg::Shutdown(reply) => state.begin_shutdown(reply, &myself),
            SupervisorMsg::Escalate { reason } => state.escalate(reason),
            SupervisorMsg::Hibernate(reply) => {
                let idle = state.current.is_none()
                    && state.queue.is_empty()
                    && state.probes.is_empty()
                    && !state.degraded
                    && state.shutdown.is_none()
                    && state.restore_timer.is_none();
                if !idle {
                    let _ = reply.send(None);
                    return Ok(());
                }
                // The Active leaves the live unit published and running; it only finishes
                // retiring the units it replaced.
                let _ = ractor::call!(state.active, ActiveMsg::Detach);
                let resume = Resume {
                    generation: state.generation,
                    known_good: state.known_good.take(),
                    previous_good: state.previous_good.take(),
                    fingerprint: state.fingerprint.take(),
                    build_timeout: state.build_timeout,
                    history: std::mem::take(&mut state.history),
                    next_id: state.next_id,
                };
                state.shutdown = Some(Vec::new());
                let _ = reply.send(Some(resume));
                myself.stop(None);
                return Ok(());
            }
            SupervisorMsg::CandidateBuilt {
                request,
                result,
                elapsed,
            } => {
                state.candidates.retain(|_, id| *id != request);
                state.candidate_built(request, *result, elapsed, &myself);
            }
            SupervisorMsg::CandidateGone { request, reason } => {
                let unreported = state.probes.contains_key(&request)
                    || state
                        .current
                        .as_ref()
                        .is_some_and(|c| c.id == request && !c.swapping && c.candidate.is_some());
                if unreported {
                    let failure = BuildFailure::new(
                        Stage::Build,
                        format!(
                            "the {} candidate exited without a result: {reason}",
                            state.unit_name
                        ),
                    );
                    state.candidate_built(request, Err(failure), Duration::ZERO, &myself);
                }
            }
            SupervisorMsg::SwapFinished(report) => state.swap_finished(*report, &myself),
            SupervisorMsg::ActiveStopped => {
                for (_, reply) in state.probes.drain() {
                    let _ = reply.send(Err(BuildFailure::new(
                        Stage::Build,
                        "the runtime is shutting down",
                    )));
                }
                for reply in state.shutdown.take().into_iter().flatten() {
                    let _ = reply.send(());
                }
                myself.stop(None);
            }
            SupervisorMsg::RetryRestore => state.restore_timer = None,
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
        let id = cell.get_id();
        if let Some(request) = state.candidates.remove(&id) {
            // Supervision events overtake ordinary messages, so the candidate's report may
            // still be in the mailbox. Look again once everything sent before now is handled.
            let _ = myself.send_message(SupervisorMsg::CandidateGone { request, reason });
        } else if id == state.active.get_id() && state.shutdown.is_some() {
            if failed {
                // It died instead of reporting: answer what waits on it, and leave.
                tracing::error!(unit = %state.unit_name, %reason, "the Active actor failed during shutdown");
                if state.current.as_ref().is_some_and(|c| c.swapping) {
                    let error = format!("the {} swap was interrupted: {reason}", state.unit_name);
                    state.finish(ReloadOutcome::RolledBack { error }, &myself);
                }
                let _ = myself.send_message(SupervisorMsg::ActiveStopped);
            }
        } else if id == state.active.get_id() {
            tracing::error!(unit = %state.unit_name, %reason, "the Active actor exited; starting a new one over the live unit");
            match spawn_active(&myself, &state.slot, &state.unit_name).await {
                Ok(active) => state.active = active,
                Err(error) => tracing::error!(%error, "cannot restart the Active actor"),
            }
            if state.current.as_ref().is_some_and(|c| c.swapping) {
                let error = format!("the {} swap was interrupted: {reason}", state.unit_name);
                state.finish(ReloadOutcome::RolledBack { error }, &myself);
            }
            if state.generation > 0 && state.slot.current_live().is_none() {
                // It died between unpublishing and publishing (a stop-first swap): nothing
                // serves. Treat it as degraded: callers fail fast, restores are retried.
                state.degraded = true;
                state.slot.mark_down();
                state.schedule_restore(&myself);
            }
        }
        state.pump(&myself).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.restore_timer.take() {
            timer.abort();
        }
        Ok(())
    }
}

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

impl<U: Unit> SupervisorState<U> {
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
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
    fn answer_unstarted(&mut self, queued: Queued<U>, outcome: ReloadOutcome) {
        let record = ReloadRecord::new(queued.id, queued.request.origin, outcome, self.generation);
        self.remember(&record);
        if let Some(reply) = queued.reply {
            let _ = reply.send(record);
        }
    }

    fn remember(&mut self, record: &ReloadRecord) {
        if self.history.len() == self.history_limit {
            self.history.pop_front();
        }
        self.history.push_back(record.clone());
        if let Some(observer) = &self.observer {
            observer.reload_finished(record);
        }
    }

    /// Takes up the next request, if nothing is under way: a queued reload first, else a
    /// pending restore.
    async fn pump(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
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
            } = queued;
            self.begin(myself, id, request.origin, request.spec, reply, reason)
                .await;
        }
    }

    async fn begin(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        id: u64,
        origin: Origin,
        spec: Arc<U::Spec>,
        reply: Option<RpcReplyPort<ReloadRecord>>,
        reason: Option<String>,
    ) {
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
            candidate: None,
            swapping: false,
        });
        match self.spawn_candidate(myself, id, spec, span).await {
            Ok(cell) => {
                if let Some(current) = &mut self.current {
                    current.candidate = Some(cell);
                }
            }
            Err(error) => {
                self.finish(
                    ReloadOutcome::Rejected {
                        stage: Stage::Build,
                        error,
                    },
                    myself,
                );
            }
        }
    }

    async fn spawn_candidate(
        &mut self,
        myself: &ActorRef<SupervisorMsg<U>>,
        id: u64,
        spec: Arc<U::Spec>,
        span: tracing::Span,
    ) -> Result<ActorCell, String> {
        let args = CandidateArgs {
            request: id,
            spec,
            context: self.context.clone(),
            timeout: self.build_timeout,
            unit_name: self.unit_name.clone(),
            supervisor: myself.clone(),
            span,
        };
        // The Candidate's pre_start only stores its arguments and cannot fail, so the
        // Supervisor does not wait for it: one handoff fewer per request.
        let (candidate, _startup) = ractor::ActorRuntime::spawn_linked_instant(
            None,
            Candidate::<U>::new(),
            args,
            myself.get_cell(),
        )
        .map_err(|e| format!("cannot spawn a {} candidate: {e}", self.unit_name))?;
        self.candidates.insert(candidate.get_id(), id);
        Ok(candidate.get_cell())
    }

    fn candidate_built(
        &mut self,
        request: u64,
        result: Result<U, BuildFailure>,
        elapsed: Duration,
        myself: &ActorRef<SupervisorMsg<U>>,
    ) {
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
        current.candidate = None;
        let unit = match result {
            Ok(unit) => unit,
            Err(failure) => {
                if current.origin == Origin::Restore {
                    tracing::warn!(unit = %self.unit_name, error = %failure, "restore failed to build; retrying later");
                    self.current = None;
                    self.restore_attempts += 1;
                    self.schedule_restore(myself);
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

    fn swap_finished(&mut self, report: SwapReport<U>, myself: &ActorRef<SupervisorMsg<U>>) {
        let Some(current) = self.current.as_mut().filter(|c| c.id == report.request) else {
            return;
        };
        let build = current.record.timings.build;
        current.record.timings = StageTimings {
            build,
            ..report.timings
        };
        let restoring = current.origin == Origin::Restore;
        let reverting = current.origin == Origin::Revert;
        let outcome = match report.result {
            SwapResult::Activated => {
                if reverting {
                    // The reverted-from spec is not a revert target, and a revert starts no
                    // probation of its own.
                    self.previous_good = None;
                    self.probation_until = None;
                } else if !restoring {
                    self.previous_good = self.known_good.take();
                    self.probation_until = report.settings.probation.map(crate::guard::deadline_in);
                }
                self.known_good = Some(report.spec);
                self.fingerprint = current.record.fingerprint.clone();
                self.build_timeout = report.settings.build_timeout;
                self.degraded = false;
                self.restore_attempts = 0;
                if let Some(timer) = self.restore_timer.take() {
                    timer.abort();
                }
                if restoring {
                    ReloadOutcome::Restored {
                        generation: self.generation,
                    }
                } else if reverting {
                    self.generation += 1;
                    let reason = current.reason.clone().unwrap_or_default();
                    ReloadOutcome::Reverted { reason }
                } else {
                    self.generation += 1;
                    ReloadOutcome::Activated {
                        generation: self.generation,
                    }
                }
            }
            SwapResult::RolledBack(error) => ReloadOutcome::RolledBack { error },
            SwapResult::Degraded {
                error,
                restore_error,
            } => {
                self.degraded = true;
                if restoring {
                    tracing::warn!(unit = %self.unit_name, %error, "restore failed to start; retrying later");
                    self.current = None;
                    self.restore_attempts += 1;
                    self.schedule_restore(myself);
                    return;
                }
                ReloadOutcome::Degraded {
                    error,
                    restore_error,
                }
            }
        };
        self.finish(outcome, myself);
    }

    /// Records the outcome of the current request, answers it, and takes up the next one.
    fn finish(&mut self, outcome: ReloadOutcome, myself: &ActorRef<SupervisorMsg<U>>) {
        let Some(current) = self.current.take() else {
            return;
        };
        let InProgress {
            mut record,
            span,
            reply,
            started,
            ..
        } = current;
        record.outcome = outcome;
        record.generation = self.generation;
        record.timings.total = Some(started.elapsed());
        span.record("outcome", record.outcome.name());
        match &record.outcome {
            ReloadOutcome::Activated { .. } | ReloadOutcome::Restored { .. } => {
                tracing::info!(parent: &span, unit = %self.unit_name, outcome = record.outcome.name(), generation = record.generation, "reload finished");
            }
            other => {
                tracing::warn!(parent: &span, unit = %self.unit_name, outcome = other.name(), error = other.error().unwrap_or(""), "reload did not activate");
            }
        }
        self.remember(&record);
        if let Some(reply) = reply {
            let _ = reply.send(record);
        }
        if self.degraded {
            self.schedule_restore(myself);
        }
    }

    fn schedule_restore(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        if self.restore_timer.is_some() || self.shutdown.is_some() || self.known_good.is_none() {
            return;
        }
        let delay = self.restore_backoff.delay(self.restore_attempts);
        tracing::info!(unit = %self.unit_name, attempt = self.restore_attempts + 1, delay_ms = delay.as_millis() as u64, "scheduling a restore of the last-known-good spec");
        self.restore_timer = Some(ractor::time::send_after(delay, myself.get_cell(), || {
            SupervisorMsg::<U>::RetryRestore
        }));
    }

    async fn start_restore_if_due(&mut self, myself: &ActorRef<SupervisorMsg<U>>) {
        if !self.degraded || self.restore_timer.is_some() {
            return;
        }
        if let Some(spec) = self.known_good.clone() {
            let id = self.take_id();
            self.begin(myself, id, Origin::Restore, spec, None, None)
                .await;
        }
    }

    fn begin_shutdown(&mut self, reply: RpcReplyPort<()>, myself: &ActorRef<SupervisorMsg<U>>) {
        if let Some(waiting) = &mut self.shutdown {
            // Already shutting down: this caller is answered when the first one is.
            waiting.push(reply);
            return;
        }
        self.shutdown = Some(vec![reply]);
        if let Some(timer) = self.restore_timer.take() {
            timer.abort();
        }
        let queued: Vec<_> = self.queue.drain(..).collect();
        for queued in queued {
            self.answer_unstarted(queued, ReloadOutcome::Superseded);
        }
        // A build under way is abandoned; a swap under way finishes first (the Active takes
        // its messages in order) and is answered truthfully.
        if let Some(current) = self.current.as_ref().filter(|c| !c.swapping) {
            if let Some(candidate) = &current.candidate {
                self.candidates.remove(&candidate.get_id());
                candidate.stop(Some("the runtime is shutting down".to_owned()));
            }
            if let Some(current) = self.current.take() {
                let mut record = current.record;
                record.outcome = ReloadOutcome::Superseded;
                self.remember(&record);
                if let Some(reply) = current.reply {
                    let _ = reply.send(record);
                }
            }
        }
        if self.active.send_message(ActiveMsg::Shutdown).is_err() {
            // No Active to stop anything: nothing is left to wait for.
            let _ = myself.send_message(SupervisorMsg::ActiveStopped);
        }
    }

    /// A crash loop below the live unit: revert within the probation window, else record it.
    fn escalate(&mut self, reason: String) {
        self.escalations += 1;
        self.last_escalation = Some(reason.clone());
        let in_probation = self
            .probation_until
            .is_some_and(|until| Instant::now() <= until);
        match self.previous_good.clone() {
            Some(spec) if in_probation && self.shutdown.is_none() => {
                tracing::warn!(unit = %self.unit_name, %reason, "escalation during probation: reverting to the previous spec");
                self.probation_until = None;
                let id = self.take_id();
                // Expecting the current generation: if a newer reload activates before the
                // revert's turn, the escalation was about a config that is gone (`Conflict`).
                let request = ReloadRequest {
                    spec,
                    expected_generation: Some(self.generation),
                    origin: Origin::Revert,
                };
                // A revert goes before anything queued: the live unit is known to be failing.
                self.queue.push_front(Queued {
                    id,
                    request,
                    reply: None,
                    reason: Some(reason),
                });
            }
            _ => {
                tracing::warn!(unit = %self.unit_name, %reason, "escalation outside probation: recorded, nothing reverted")
            }
        }
    }

    fn status(&self, myself: &ActorRef<SupervisorMsg<U>>) -> SupervisorStatus {
        let state = if self.shutdown.is_some() {
            RunState::Stopping
        } else if self.degraded
            && self
                .current
                .as_ref()
                .is_none_or(|c| c.origin == Origin::Restore)
        {
            RunState::Degraded
        } else if self
            .current
            .as_ref()
            .is_some_and(|c| c.origin != Origin::Restore)
        {
            if self.generation == 0 {
                RunState::Starting
            } else {
                RunState::Reloading
            }
        } else if self.generation == 0 {
            RunState::Starting
        } else {
            RunState::Running
        };
        SupervisorStatus {
            state,
            generation: self.generation,
            fingerprint: self.fingerprint.clone(),
            last_reload: self.history.back().cloned(),
            history: self.history.iter().cloned().collect(),
            queued: self.queue.len(),
            child_actors: myself.get_children().len(),
            restore_attempts: self.restore_attempts,
            escalations: self.escalations,
            last_escalation: self.last_escalation.clone(),
        }
    }
}
