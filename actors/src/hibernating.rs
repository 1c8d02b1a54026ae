//! A Supervisor that exists only while it has work.
//!
//! A slot whose unit seldom reloads (one per plugin instance, say) would otherwise keep two
//! idle actors alive, a Supervisor and an Active, for nothing: callers reach the live unit
//! through the [`Slot`] without them. A [`HibernatingSupervisor`] spawns the pair when a request
//! needs them and lets them hibernate again afterwards: the Supervisor hands back a
//! [`Resume`] snapshot (generation, last-known-good spec, history) and exits with its Active,
//! while the live unit stays published and keeps serving. The next request spawns a new pair
//! from the snapshot, so the protocol carries on exactly where it left off.
//!
//! ```text
//!            reload / supervisor()                 reload answered, idle
//!   Asleep ─────────────────────────▶ Awake ───────────────────────────────▶ Asleep
//!     │        (spawned from Resume)    │  (Hibernate: Resume handed back)
//!     │ shutdown                        │ shutdown
//!     ▼  (the live unit is stopped      ▼  (SupervisorMsg::Shutdown)
//!   Gone     without waking anything) Gone
//! ```
//!
//! An embedder that asks for the Supervisor's `ActorRef` ([`HibernatingSupervisor::supervisor`])
//! pins it awake, since it may send it messages at any time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::time::Instant;

use crate::active::stop_for_good;
use crate::guard::{GRACE, later};
use crate::outcome::ReloadRecord;
use crate::slot::Slot;
use crate::supervisor::{
    InternalMsg, ReloadRequest, Respawn, Resume, Supervisor, SupervisorArgs, SupervisorMsg,
};
use crate::unit::Unit;

/// Why a [`HibernatingSupervisor`] could not carry out a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorUnavailable {
    /// The slot has been shut down; it takes no more requests.
    #[error("{0} has been shut down")]
    ShutDown(String),
    /// Its Supervisor could not be spawned.
    #[error("cannot start the Supervisor of {unit}: {reason}")]
    Spawn {
        /// The unit's name.
        unit: String,
        /// What ractor said.
        reason: String,
    },
    /// Its Supervisor exited before answering.
    #[error("the Supervisor of {0} exited before answering")]
    Exited(String),
}

/// The Supervisor of one slot, spawned when a request needs it and hibernated when idle.
/// Cheap to clone: clones share one slot and one Supervisor.
pub struct HibernatingSupervisor<U: Unit> {
    inner: Arc<Inner<U>>,
}

impl<U: Unit> Clone for HibernatingSupervisor<U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<U: Unit> fmt::Debug for HibernatingSupervisor<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HibernatingSupervisor")
            .field("unit_name", &self.inner.args.unit_name)
            .field("slot", &self.inner.args.slot)
            .finish_non_exhaustive()
    }
}

/// What the clones of one handle share: the arguments and whether the Supervisor sleeps.
struct Inner<U: Unit> {
    /// What each Supervisor is spawned with (its `resume` comes from `sleep`).
    args: Respawn<U>,
    sleep: tokio::sync::Mutex<Sleep<U>>,
}

/// Whether the Supervisor is spawned.
enum Sleep<U: Unit> {
    Awake {
        supervisor: ActorRef<SupervisorMsg<U>>,
        exit: tokio::task::JoinHandle<()>,
        /// An embedder holds its ActorRef: it stays awake.
        pinned: bool,
    },
    Asleep(Option<Resume<U>>),
    /// Shut down: a request that was waiting for the lock must not bring it back.
    Gone,
}

impl<U: Unit> fmt::Debug for Inner<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("args", &self.args)
            .field("sleep", &self.sleep)
            .finish()
    }
}

impl<U: Unit> fmt::Debug for Sleep<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sleep::Awake {
                supervisor, pinned, ..
            } => f
                .debug_struct("Awake")
                .field("supervisor", supervisor)
                .field("pinned", pinned)
                .finish_non_exhaustive(),
            Sleep::Asleep(resume) => f.debug_tuple("Asleep").field(resume).finish(),
            Sleep::Gone => f.write_str("Gone"),
        }
    }
}

impl<U: Unit> HibernatingSupervisor<U> {
    /// A handle for the slot in `args`, asleep: the first request spawns its Supervisor
    /// (carrying on from `args.resume`, if given).
    pub fn new(args: SupervisorArgs<U>) -> Self {
        let (args, resume) = args.template();
        Self {
            inner: Arc::new(Inner {
                args,
                sleep: tokio::sync::Mutex::new(Sleep::Asleep(resume)),
            }),
        }
    }

    /// The slot the Supervisor publishes to.
    pub fn slot(&self) -> &Arc<Slot<U>> {
        &self.inner.args.slot
    }

    /// Sends `request` through the slot's Supervisor, spawned for it if it sleeps, and lets
    /// it hibernate again once the request has its outcome. The request runs in a task of its
    /// own, so a caller that gives up cannot leave the Supervisor half put to sleep.
    pub async fn reload(
        &self,
        request: ReloadRequest<U::Spec>,
    ) -> Result<ReloadRecord, SupervisorUnavailable> {
        let inner = self.inner.clone();
        let reload = tokio::spawn(async move {
            let mut sleep = inner.sleep.lock().await;
            let supervisor = inner.wake(&mut sleep).await?;
            let record = ractor::call!(supervisor, SupervisorMsg::Reload, request)
                .map_err(|_| SupervisorUnavailable::Exited(inner.args.unit_name.clone()));
            inner.rest(&mut sleep).await;
            record
        });
        reload
            .await
            .map_err(|_| SupervisorUnavailable::Exited(self.inner.args.unit_name.clone()))?
    }

    /// The Supervisor's `ActorRef`, for sending it messages directly. It stays awake from then
    /// on.
    pub async fn supervisor(&self) -> Result<ActorRef<SupervisorMsg<U>>, SupervisorUnavailable> {
        let mut sleep = self.inner.sleep.lock().await;
        let supervisor = self.inner.wake(&mut sleep).await?;
        if let Sleep::Awake { pinned, .. } = &mut *sleep {
            *pinned = true;
        }
        Ok(supervisor)
    }

    /// Passes an escalation (a crash loop below the live unit) to the Supervisor when it is
    /// on probation, waking it if it sleeps, so that it reverts to the previous spec. True when
    /// it was passed on; false (and nothing woken) when no probation window is open, so that
    /// the caller can escalate elsewhere.
    pub async fn escalate(&self, reason: String) -> bool {
        let inner = self.inner.clone();
        let escalation = tokio::spawn(async move {
            let mut sleep = inner.sleep.lock().await;
            let on_probation = match &*sleep {
                Sleep::Asleep(resume) => resume.as_ref().is_some_and(Resume::on_probation),
                Sleep::Awake { supervisor, .. } => {
                    matches!(ractor::call!(supervisor, SupervisorMsg::Status), Ok(status) if status.on_probation)
                }
                Sleep::Gone => false,
            };
            if !on_probation {
                return false;
            }
            let Ok(supervisor) = inner.wake(&mut sleep).await else {
                return false;
            };
            supervisor
                .send_message(SupervisorMsg::Escalate { reason })
                .is_ok()
        });
        escalation.await.unwrap_or(false)
    }

    /// True while a Supervisor is spawned (a request is under way, or it is pinned).
    pub async fn is_awake(&self) -> bool {
        matches!(*self.inner.sleep.lock().await, Sleep::Awake { .. })
    }

    /// Stops the slot for good: an awake Supervisor is asked to shut down, and a sleeping one
    /// is not woken for it (the live unit is drained and stopped directly). True when all was
    /// stopped by `deadline`; otherwise whatever was still running has been abandoned and the
    /// caller may kill what the unit left behind.
    pub async fn shutdown(&self, deadline: Instant) -> bool {
        let mut sleep = self.inner.sleep.lock().await;
        // A moment past the deadline, so that a unit stopping right at it is not cut off.
        let wait = later(deadline, GRACE);
        let stop_asleep = || async {
            let stopping = stop_for_good(&self.inner.args.slot, &self.inner.args.unit_name);
            tokio::time::timeout_at(wait, stopping).await.is_ok()
        };
        match std::mem::replace(&mut *sleep, Sleep::Gone) {
            Sleep::Gone => true,
            Sleep::Asleep(_) => stop_asleep().await,
            // It died (an embedder stopped it, say): the live unit is stopped as if it slept.
            Sleep::Awake { supervisor, .. } if !is_alive(&supervisor) => stop_asleep().await,
            Sleep::Awake {
                supervisor, exit, ..
            } => {
                let millis = wait.saturating_duration_since(Instant::now()).as_millis();
                let asked = ractor::call_t!(
                    supervisor,
                    SupervisorMsg::Shutdown,
                    u64::try_from(millis).unwrap_or(u64::MAX)
                );
                if asked.is_err() {
                    supervisor.kill();
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), exit).await;
                asked.is_ok()
            }
        }
    }
}

impl<U: Unit> Inner<U> {
    /// The Supervisor, spawned (from where it hibernated) if it sleeps.
    async fn wake(
        &self,
        sleep: &mut Sleep<U>,
    ) -> Result<ActorRef<SupervisorMsg<U>>, SupervisorUnavailable> {
        if let Sleep::Awake { supervisor, .. } = sleep {
            if is_alive(supervisor) {
                return Ok(supervisor.clone());
            }
            // It died: carry on without its history rather than refuse every later request.
            tracing::warn!(unit = %self.args.unit_name, "the Supervisor had died; starting a new one");
            *sleep = Sleep::Asleep(None);
        }
        let Sleep::Asleep(resume) = sleep else {
            return Err(SupervisorUnavailable::ShutDown(self.args.unit_name.clone()));
        };
        let resume = resume.take();
        let (supervisor, exit) = Supervisor::spawn_for(self.args.args(resume))
            .await
            .map_err(|e| SupervisorUnavailable::Spawn {
                unit: self.args.unit_name.clone(),
                reason: e.to_string(),
            })?;
        *sleep = Sleep::Awake {
            supervisor: supervisor.clone(),
            exit,
            pinned: false,
        };
        Ok(supervisor)
    }

    /// Lets an unpinned, idle Supervisor hibernate. A busy one stays awake and is asked again
    /// after the next request.
    async fn rest(&self, sleep: &mut Sleep<U>) {
        let Sleep::Awake {
            supervisor,
            pinned: false,
            ..
        } = sleep
        else {
            return;
        };
        let asked = supervisor
            .call(
                |reply| SupervisorMsg::internal(InternalMsg::Hibernate(reply)),
                None,
            )
            .await;
        let Ok(ractor::rpc::CallResult::Success(Some(resume))) = asked else {
            return;
        };
        if let Sleep::Awake { exit, .. } = std::mem::replace(sleep, Sleep::Asleep(Some(resume))) {
            let _ = exit.await;
        }
    }
}

/// False once the actor is stopping or stopped.
fn is_alive<M>(actor: &ActorRef<M>) -> bool {
    !matches!(
        actor.get_status(),
        ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
    )
}
