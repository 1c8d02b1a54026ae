//! What a Supervisor is spawned with, and what it keeps.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::hibernation::Resume;
use super::messages::{Prepared, ReloadRequest, SupervisorMsg};
use crate::active::ActiveMsg;
use crate::backoff::Backoff;
use crate::outcome::{Origin, ReloadRecord};
use crate::slot::Slot;
use crate::unit::{BuildFailure, SwapSettings, Unit};

/// Told about every finished reload (metrics, for example).
pub trait ReloadObserver: Send + Sync + 'static {
    /// Called once per outcome, in order, from the Supervisor.
    fn reload_finished(&self, record: &ReloadRecord);
}

/// What a Supervisor is spawned with. [`SupervisorArgs::new`] fills in the defaults.
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

impl<U: Unit> SupervisorArgs<U> {
    /// Arguments with the defaults: the default [`SwapSettings`] build timeout, 20 records of
    /// history, restores from 100 ms doubling to 30 s ([`Backoff::default`]), no observer, and
    /// a fresh start.
    pub fn new(unit_name: impl Into<String>, context: Arc<U::Context>, slot: Arc<Slot<U>>) -> Self {
        Self {
            unit_name: unit_name.into(),
            context,
            slot,
            build_timeout: SwapSettings::default().build_timeout,
            history_limit: 20,
            restore_backoff: Backoff::default(),
            observer: None,
            resume: None,
        }
    }

    /// These arguments without `resume`, to spawn Supervisors from again and again.
    pub(crate) fn template(self) -> (Respawn<U>, Option<Resume<U>>) {
        let respawn = Respawn {
            unit_name: self.unit_name,
            context: self.context,
            slot: self.slot,
            build_timeout: self.build_timeout,
            history_limit: self.history_limit,
            restore_backoff: self.restore_backoff,
            observer: self.observer,
        };
        (respawn, self.resume)
    }
}

/// Supervisor arguments without `resume`: what a hibernating slot keeps to spawn its next
/// Supervisor (kept apart so that an idle slot does not carry room for a snapshot it never
/// holds there).
pub(crate) struct Respawn<U: Unit> {
    pub(crate) unit_name: String,
    context: Arc<U::Context>,
    pub(crate) slot: Arc<Slot<U>>,
    build_timeout: Duration,
    history_limit: usize,
    restore_backoff: Backoff,
    observer: Option<Arc<dyn ReloadObserver>>,
}

impl<U: Unit> Respawn<U> {
    /// The arguments of the next Supervisor, carrying on from `resume`.
    pub(crate) fn args(&self, resume: Option<Resume<U>>) -> SupervisorArgs<U> {
        SupervisorArgs {
            unit_name: self.unit_name.clone(),
            context: self.context.clone(),
            slot: self.slot.clone(),
            build_timeout: self.build_timeout,
            history_limit: self.history_limit,
            restore_backoff: self.restore_backoff,
            observer: self.observer.clone(),
            resume,
        }
    }
}

/// A request waiting for its turn.
pub(super) struct Queued<U: Unit> {
    pub(super) id: u64,
    pub(super) request: ReloadRequest<U::Spec>,
    pub(super) reply: Option<RpcReplyPort<ReloadRecord>>,
    /// Why, for a revert.
    pub(super) reason: Option<String>,
    /// For a commit: the unit prepared for it, swapped in without building again.
    pub(super) prebuilt: Option<Prebuilt<U>>,
}

/// A prepare waiting for its Candidate: how long to hold the unit, and who waits for the ticket.
pub(super) type Preparing<U> = (
    Duration,
    RpcReplyPort<Result<Prepared<<U as Unit>::Summary>, BuildFailure>>,
);

/// A unit built ahead of its reload, and how long the build took.
pub(super) struct Prebuilt<U> {
    pub(super) unit: Box<U>,
    pub(super) build: Duration,
}

/// A prepared unit waiting for its commit or abort, and the timer that drops it.
pub(super) struct Held<U> {
    pub(super) unit: Prebuilt<U>,
    pub(super) expiry: tokio::task::JoinHandle<()>,
}

/// The request being worked on.
pub(super) struct InProgress {
    pub(super) id: u64,
    pub(super) origin: Origin,
    pub(super) reason: Option<String>,
    pub(super) reply: Option<RpcReplyPort<ReloadRecord>>,
    pub(super) record: ReloadRecord,
    pub(super) started: Instant,
    pub(super) span: tracing::Span,
    /// The built unit's [`Unit::identity`], live once it activates.
    pub(super) identity: Option<String>,
    /// Set once the Active has the unit.
    pub(super) swapping: bool,
}

/// The pending restore timer: aborting the handle cancels the timer itself.
pub(super) type RestoreTimer<U> =
    tokio::task::JoinHandle<Result<(), ractor::MessagingErr<SupervisorMsg<U>>>>;

/// The Supervisor's state. Opaque.
pub struct SupervisorState<U: Unit> {
    pub(super) unit_name: Arc<str>,
    pub(super) context: Arc<U::Context>,
    pub(super) slot: Arc<Slot<U>>,
    pub(super) active: ActorRef<ActiveMsg<U>>,
    pub(super) generation: u64,
    pub(super) known_good: Option<Arc<U::Spec>>,
    /// The spec that was live before the current one (the revert target).
    pub(super) previous_good: Option<Arc<U::Spec>>,
    /// Until when the current generation may be reverted by an escalation.
    pub(super) probation_until: Option<Instant>,
    pub(super) escalations: u32,
    pub(super) last_escalation: Option<String>,
    pub(super) fingerprint: Option<String>,
    /// The live unit's [`Unit::identity`]: a reload to a unit with the same one is `Unchanged`.
    pub(super) live_identity: Option<String>,
    pub(super) build_timeout: Duration,
    pub(super) degraded: bool,
    pub(super) history: VecDeque<ReloadRecord>,
    pub(super) history_limit: usize,
    pub(super) queue: VecDeque<Queued<U>>,
    pub(super) current: Option<InProgress>,
    /// Try-activates waiting for their Candidate, by request id.
    pub(super) probes: HashMap<u64, RpcReplyPort<Result<U::Summary, BuildFailure>>>,
    /// Prepares waiting for their Candidate, by request id, with how long to hold the unit.
    pub(super) preparing: HashMap<u64, Preparing<U>>,
    /// Prepared units waiting for a commit or an abort, by ticket.
    pub(super) prepared: HashMap<u64, Held<U>>,
    /// Candidates building, by the request each builds for: aborting one cancels its build.
    pub(super) candidates: HashMap<u64, AbortHandle>,
    pub(super) next_id: u64,
    pub(super) restore_backoff: Backoff,
    pub(super) restore_attempts: u32,
    pub(super) restore_timer: Option<RestoreTimer<U>>,
    pub(super) observer: Option<Arc<dyn ReloadObserver>>,
    /// Set once the Supervisor is leaving (shutdown or hibernation): the callers to answer
    /// when the Active has stopped.
    pub(super) shutdown: Option<Vec<RpcReplyPort<()>>>,
}

impl<U: Unit> SupervisorState<U> {
    /// The state of a new Supervisor whose Active is `active`, carrying on from `args.resume`.
    pub(super) fn new(
        args: SupervisorArgs<U>,
        unit_name: Arc<str>,
        active: ActorRef<ActiveMsg<U>>,
    ) -> Self {
        let resume = args
            .resume
            .unwrap_or_else(|| Resume::fresh(args.build_timeout));
        Self {
            unit_name,
            context: args.context,
            slot: args.slot,
            active,
            generation: resume.generation,
            known_good: resume.known_good,
            previous_good: resume.previous_good,
            probation_until: resume.probation_until,
            escalations: 0,
            last_escalation: None,
            fingerprint: resume.fingerprint,
            live_identity: None,
            build_timeout: resume.build_timeout,
            degraded: false,
            history: resume.history,
            history_limit: args.history_limit.max(1),
            queue: VecDeque::new(),
            current: None,
            probes: HashMap::new(),
            preparing: HashMap::new(),
            prepared: HashMap::new(),
            candidates: HashMap::new(),
            next_id: resume.next_id,
            restore_backoff: args.restore_backoff,
            restore_attempts: 0,
            restore_timer: None,
            observer: args.observer,
            shutdown: None,
        }
    }

    pub(super) fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}
