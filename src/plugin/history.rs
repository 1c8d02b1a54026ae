//! A plugin instance's own reload history: every outcome its slot's swaps had, bounded like
//! the engine's, with the count of each outcome for `/metrics`.
//!
//! It observes the slot's Supervisor, as the engine's history observes the engine's, so every
//! swap the protocol decides (a per-plugin reload, an engine reload that changes the entry, a
//! code file that changed, a probation revert) is recorded once; a per-plugin reload refused
//! before it reaches the Supervisor (a spec that does not validate) is recorded by the slot.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use swapvisor_actors::{Origin, ReloadObserver, ReloadRecord, SupervisorArgs, Unit};

/// How many reloads a plugin's history keeps, as the engine's does by default.
const LIMIT: usize = 20;

/// One reload of a plugin instance, as status and the admin API show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct PluginReload {
    /// Who asked (`initial`, `api`, `admin`, `watch`, `revert`, ...).
    pub origin: Origin,
    /// What became of it, in the vocabulary of [`ReloadOutcome::name`]
    /// (`activated`, `rejected`, `rolled_back`, `reverted`, ...).
    ///
    /// [`ReloadOutcome::name`]: swapvisor_actors::ReloadOutcome::name
    pub outcome: &'static str,
    /// Why it did not activate, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The slot's generation after it.
    pub generation: u64,
    /// When it was taken up, RFC 3339.
    pub at: String,
    /// How long it took, in milliseconds, when the protocol timed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl From<&ReloadRecord> for PluginReload {
    fn from(record: &ReloadRecord) -> Self {
        Self {
            origin: record.origin,
            outcome: record.outcome.name(),
            error: record.outcome.error().map(str::to_owned),
            generation: record.generation,
            at: humantime::format_rfc3339_millis(record.started_at).to_string(),
            duration_ms: record.timings.total.map(|d| d.as_millis() as u64),
        }
    }
}

/// The reloads of one plugin slot: the latest [`LIMIT`], and how many of each outcome.
#[derive(Debug, Default)]
pub(crate) struct PluginHistory {
    inner: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    reloads: VecDeque<PluginReload>,
    counts: BTreeMap<&'static str, u64>,
}

impl PluginHistory {
    /// A history that observes the Supervisor `args` will spawn.
    pub(super) fn observe<U: Unit>(args: &mut SupervisorArgs<U>) -> Arc<Self> {
        let history = Arc::new(Self::default());
        args.observer = Some(history.clone());
        history
    }

    /// Records `record`.
    pub(super) fn record(&self, record: &ReloadRecord) {
        let reload = PluginReload::from(record);
        // Plain data updated in one short section: a poisoned lock still holds it whole.
        let mut recorded = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *recorded.counts.entry(reload.outcome).or_default() += 1;
        if recorded.reloads.len() == LIMIT {
            recorded.reloads.pop_front();
        }
        recorded.reloads.push_back(reload);
    }

    /// The reloads kept, oldest first.
    pub(super) fn reloads(&self) -> Vec<PluginReload> {
        let recorded = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        recorded.reloads.iter().cloned().collect()
    }

    /// The latest reload, and the count of each outcome so far.
    pub(super) fn summary(&self) -> (Option<PluginReload>, BTreeMap<&'static str, u64>) {
        let recorded = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (recorded.reloads.back().cloned(), recorded.counts.clone())
    }
}

impl ReloadObserver for PluginHistory {
    fn reload_finished(&self, record: &ReloadRecord) {
        self.record(record);
    }
}
