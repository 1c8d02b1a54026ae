//! The one typed outcome of every reload, and the record kept of it.
//!
//! The same [`ReloadOutcome`] is what the Rust API returns, what the admin API answers, what
//! metrics count (by [`ReloadOutcome::name`]) and what status shows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::changes::Changes;
use crate::unit::Stage;

/// What became of one reload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new unit is live under `generation`.
    Activated {
        /// The new generation.
        generation: u64,
    },
    /// The spec was refused before anything was touched; the live unit never noticed.
    Rejected {
        /// Parse, validate or build.
        stage: Stage,
        /// Every problem found.
        error: String,
    },
    /// The new unit built but failed to start; the previous unit serves on, and the generation
    /// is unchanged.
    RolledBack {
        /// Why the new unit failed.
        error: String,
    },
    /// The new unit failed to start *and* the previous one could not be restored (stop-first
    /// only). Nothing serves; the runtime retries the restore with backoff until a restore or a
    /// new reload succeeds.
    Degraded {
        /// Why the new unit failed.
        error: String,
        /// Why the previous unit could not be restored.
        restore_error: String,
    },
    /// A newer request replaced this one before it was applied (file-watcher and signal
    /// reloads coalesce), or the runtime shut down first.
    Superseded,
    /// The runtime went back to the previous spec on its own, because the newly activated one
    /// escalated a crash loop during its probation window. The generation increases.
    Reverted {
        /// The escalation that caused it (what crash-looped, and its last error).
        reason: String,
    },
    /// A degraded runtime restored its last-known-good spec (generation unchanged).
    Restored {
        /// The generation serving again.
        generation: u64,
    },
    /// The spec is identical to the live one ([`Unit::identity`](crate::Unit::identity)):
    /// nothing was swapped or restarted, and the generation stays.
    Unchanged {
        /// The generation that is live, and stays.
        generation: u64,
    },
    /// The request expected another generation (compare-and-swap); nothing changed.
    Conflict {
        /// The generation the request expected.
        expected: u64,
        /// The generation that is current.
        current: u64,
    },
}

impl ReloadOutcome {
    /// The outcome's name: `activated`, `rejected`, `rolled_back`, `degraded`, `superseded`,
    /// `reverted`, `restored`, `conflict` or `unchanged`. Metrics count outcomes under these names.
    pub fn name(&self) -> &'static str {
        match self {
            ReloadOutcome::Activated { .. } => "activated",
            ReloadOutcome::Rejected { .. } => "rejected",
            ReloadOutcome::RolledBack { .. } => "rolled_back",
            ReloadOutcome::Degraded { .. } => "degraded",
            ReloadOutcome::Superseded => "superseded",
            ReloadOutcome::Reverted { .. } => "reverted",
            ReloadOutcome::Restored { .. } => "restored",
            ReloadOutcome::Conflict { .. } => "conflict",
            ReloadOutcome::Unchanged { .. } => "unchanged",
        }
    }

    /// Every outcome name, for metrics that list zeros too.
    pub const NAMES: [&'static str; 9] = [
        "activated",
        "rejected",
        "rolled_back",
        "degraded",
        "superseded",
        "reverted",
        "restored",
        "conflict",
        "unchanged",
    ];

    /// The error, for outcomes that have one.
    pub fn error(&self) -> Option<&str> {
        match self {
            ReloadOutcome::Rejected { error, .. }
            | ReloadOutcome::RolledBack { error }
            | ReloadOutcome::Degraded { error, .. } => Some(error),
            ReloadOutcome::Reverted { reason } => Some(reason),
            _ => None,
        }
    }

    /// True when the outcome left a new unit live.
    pub fn is_activated(&self) -> bool {
        matches!(self, ReloadOutcome::Activated { .. })
    }
}

/// Who asked for a reload. Requests from the file watcher and from signals coalesce; the others
/// are applied in order of arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Origin {
    /// The first activation, when the runtime starts.
    Initial,
    /// The Rust API or an actor message.
    Api,
    /// The admin HTTP API.
    Admin,
    /// The config file watcher.
    Watch,
    /// A signal (SIGHUP).
    Signal,
    /// The runtime restoring itself after a degraded swap.
    Restore,
    /// The runtime reverting to the last-known-good spec on its own.
    Revert,
    /// The commit of a prepared unit (the second phase of a fleet reload).
    Fleet,
}

impl Origin {
    /// True for origins whose requests coalesce: only the latest pending one is applied.
    pub fn coalesces(self) -> bool {
        matches!(self, Origin::Watch | Origin::Signal)
    }
}

/// How long each stage of a reload took. Absent stages did not run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageTimings {
    /// Building the candidate.
    pub build: Option<Duration>,
    /// Starting the new unit.
    pub start: Option<Duration>,
    /// Draining the old unit (stop-first; in start-first the drain runs after the reply).
    pub drain: Option<Duration>,
    /// Stopping the old unit (stop-first) or the failed new one.
    pub stop: Option<Duration>,
    /// Restoring the previous unit after a failed start.
    pub rollback: Option<Duration>,
    /// From the request to the outcome.
    pub total: Option<Duration>,
}

/// One reload as remembered in history.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadRecord {
    /// Sequence number of the request within this runtime.
    pub id: u64,
    /// Who asked.
    pub origin: Origin,
    /// What became of it.
    pub outcome: ReloadOutcome,
    /// The generation after it.
    pub generation: u64,
    /// The candidate's fingerprint (config hash), when it was built.
    pub fingerprint: Option<String>,
    /// What the candidate changes against the unit live when it was built
    /// ([`Unit::changes`](crate::Unit::changes)), when it was built and can tell.
    pub changes: Option<Changes>,
    /// When the request was taken up.
    pub started_at: SystemTime,
    /// How long each stage took.
    pub timings: StageTimings,
}

impl ReloadRecord {
    /// A record of `outcome` for request `id`, started now.
    pub fn new(id: u64, origin: Origin, outcome: ReloadOutcome, generation: u64) -> Self {
        Self {
            id,
            origin,
            outcome,
            generation,
            fingerprint: None,
            changes: None,
            started_at: SystemTime::now(),
            timings: StageTimings::default(),
        }
    }
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Serialize for StageTimings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in [
            ("build", self.build),
            ("start", self.start),
            ("drain", self.drain),
            ("stop", self.stop),
            ("rollback", self.rollback),
            ("total", self.total),
        ] {
            if let Some(value) = value {
                map.serialize_entry(name, &millis(value))?;
            }
        }
        map.end()
    }
}

/// `{"id", "origin", "outcome", "stage"?, "error"?, "restoreError"?, "generation",
/// "fingerprint"?, "changes"?, "startedAtMs", "durationsMs"}`.
impl Serialize for ReloadRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("origin", &self.origin)?;
        map.serialize_entry("outcome", self.outcome.name())?;
        match &self.outcome {
            ReloadOutcome::Rejected { stage, error } => {
                map.serialize_entry("stage", stage)?;
                map.serialize_entry("error", error)?;
            }
            ReloadOutcome::Degraded {
                error,
                restore_error,
            } => {
                map.serialize_entry("error", error)?;
                map.serialize_entry("restoreError", restore_error)?;
            }
            ReloadOutcome::Conflict { expected, .. } => {
                map.serialize_entry("expectedGeneration", expected)?
            }
            other => {
                if let Some(error) = other.error() {
                    map.serialize_entry("error", error)?;
                }
            }
        }
        map.serialize_entry("generation", &self.generation)?;
        if let Some(fingerprint) = &self.fingerprint {
            map.serialize_entry("fingerprint", fingerprint)?;
        }
        if let Some(changes) = &self.changes {
            map.serialize_entry("changes", changes)?;
        }
        let started = self
            .started_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        map.serialize_entry("startedAtMs", &(started.as_millis() as u64))?;
        map.serialize_entry("durationsMs", &self.timings)?;
        map.end()
    }
}
