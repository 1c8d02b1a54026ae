//! What a Supervisor is spawned with, and what it keeps.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;

use super::candidates::Candidates;
use super::hibernation::Resume;
use super::lineage::Lineage;
use super::outcomes::History;
use super::phase::Phase;
use super::prepared::Prepares;
use super::queue::Queue;
use super::recovery::Recovery;
use crate::active::ActiveMsg;
use crate::backoff::Backoff;
use crate::outcome::ReloadRecord;
use crate::slot::Slot;
use crate::unit::{SwapSettings, Unit};

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

impl<U: Unit> fmt::Debug for SupervisorArgs<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorArgs")
            .field("unit_name", &self.unit_name)
            .field("slot", &self.slot)
            .field("build_timeout", &self.build_timeout)
            .field("history_limit", &self.history_limit)
            .field("restore_backoff", &self.restore_backoff)
            .field("observer", &self.observer.is_some())
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
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

impl<U: Unit> fmt::Debug for Respawn<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Shown as the arguments it spawns from (without a snapshot).
        self.args(None).fmt(f)
    }
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

/// The Supervisor's state. Opaque.
///
/// Each part is kept by the file that works with it: the [phase](super::phase) (what is under
/// way, or that it is leaving), the [lineage](super::lineage) (generation and fall-back
/// specs), the [history](super::outcomes), the [queue](super::queue), the
/// [candidates](super::candidates), the [prepares](super::prepared) and
/// [recovery](super::recovery) (health, restore backoff, escalations).
pub struct SupervisorState<U: Unit> {
    pub(super) unit_name: Arc<str>,
    pub(super) context: Arc<U::Context>,
    pub(super) slot: Arc<Slot<U>>,
    pub(super) active: ActorRef<ActiveMsg<U>>,
    /// The id the next request gets.
    pub(super) next_id: u64,
    pub(super) phase: Phase,
    pub(super) lineage: Lineage<U>,
    pub(super) history: History,
    pub(super) queue: Queue<U>,
    pub(super) candidates: Candidates<U>,
    pub(super) prepares: Prepares<U>,
    pub(super) recovery: Recovery<U>,
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
        let (lineage, history, next_id) = resume.into_parts();
        Self {
            unit_name,
            context: args.context,
            slot: args.slot,
            active,
            next_id,
            phase: Phase::Idle,
            lineage,
            history: History::new(history, args.history_limit, args.observer),
            queue: Queue::new(),
            candidates: Candidates::new(),
            prepares: Prepares::new(),
            recovery: Recovery::new(args.restore_backoff),
        }
    }

    pub(super) fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

impl<U: Unit> fmt::Debug for SupervisorState<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorState")
            .field("unit_name", &self.unit_name)
            .field("slot", &self.slot)
            .field("active", &self.active)
            .field("next_id", &self.next_id)
            .field("phase", &self.phase)
            .field("lineage", &self.lineage)
            .field("history", &self.history)
            .field("queue", &self.queue)
            .field("candidates", &self.candidates)
            .field("prepares", &self.prepares)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}
