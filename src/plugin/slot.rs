//! One plugin instance's slot: the live instance, the Supervisor that swaps it, and what the
//! config asked for.

use std::sync::{Arc, Mutex, Weak};

use swapvisor_actors::{
    HibernatingSupervisor, Origin, ReloadOutcome, ReloadRecord, ReloadRequest, Slot, Stage,
};

use super::checkpoints::CheckpointStore;
use super::core::{CrashRecord, InstanceCore, Phase};
use super::history::{PluginHistory, PluginReload};
use super::instance::PluginInstance;
use super::spec::PluginUnitSpec;
use super::status::{PluginState, PluginStatus, RestartGroupStatus};
use crate::config::{PluginSpec, SharedEnv, resolve_plugin};
use crate::extension::plugin::PluginError;
use crate::net::lock;
use crate::watch::{DEBOUNCE, FileChange, FileWatch};

/// The slot of one plugin instance, by name: it outlives the instance's crashes, restarts and
/// reloads.
pub(crate) struct PluginSlot {
    name: Arc<str>,
    /// The slot's swap Supervisor, awake only while a reload (or an embedder) needs it; it
    /// holds the slot itself.
    pub(super) swap: HibernatingSupervisor<PluginInstance>,
    /// The spec the engine config last asked for (a per-plugin reload may run another).
    configured: Mutex<Arc<PluginUnitSpec>>,
    record: Arc<CrashRecord>,
    /// Its checkpoints, shared by its instances.
    checkpoints: Arc<CheckpointStore>,
    /// Its reloads, as its Supervisor reports them.
    history: Arc<PluginHistory>,
    /// Where `${VAR}` values of per-plugin reloads come from.
    pub(super) env: SharedEnv,
    /// Follows the live instance's code file, when its config asks for that.
    code_watch: Mutex<Option<FileWatch>>,
    /// The restart group that governs it, as the groups last told it.
    restart_group: Mutex<Option<RestartGroupStatus>>,
}

impl PluginSlot {
    pub(super) fn new(
        spec: Arc<PluginUnitSpec>,
        swap: HibernatingSupervisor<PluginInstance>,
        record: Arc<CrashRecord>,
        (checkpoints, history): (Arc<CheckpointStore>, Arc<PluginHistory>),
        env: SharedEnv,
    ) -> Self {
        Self {
            name: Arc::from(spec.name()),
            swap,
            configured: Mutex::new(spec),
            record,
            checkpoints,
            history,
            env,
            code_watch: Mutex::default(),
            restart_group: Mutex::default(),
        }
    }

    /// The restart group that governs it now (the restart groups keep this current).
    pub(super) fn set_restart_group(&self, group: Option<RestartGroupStatus>) {
        *lock(&self.restart_group) = group;
    }

    /// Watches the file the live instance's code comes from (see
    /// [`Plugin::watched_file`](crate::plugin::Plugin::watched_file)), or stops watching when
    /// it has none; called whenever a reload may have changed the instance. A change of the
    /// file's content reloads the instance with its current spec, as a `watch` reload.
    pub(super) fn follow_code(self: &Arc<Self>) {
        let wanted = self.current_core().and_then(|core| core.watched.clone());
        let mut watch = self.code_watch.lock().unwrap_or_else(|e| e.into_inner());
        if watch.as_ref().map(FileWatch::path) == wanted.as_deref() {
            return;
        }
        *watch = None;
        let Some(path) = wanted else {
            return;
        };
        let slot = Arc::downgrade(self);
        let on_change = move |change: FileChange| {
            let reloaded: futures::future::BoxFuture<'static, bool> =
                Box::pin(code_changed(slot.clone(), change.hash));
            reloaded
        };
        match FileWatch::start(&path, DEBOUNCE, Box::new(on_change)) {
            Ok(started) => {
                tracing::info!(plugin = %self.name, file = %path.display(), "watching the plugin's code");
                *watch = Some(started);
            }
            Err(error) => {
                tracing::warn!(plugin = %self.name, file = %path.display(), %error, "cannot watch the plugin's code")
            }
        }
    }

    /// The instance's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its checkpoints.
    pub(super) fn checkpoints(&self) -> &Arc<CheckpointStore> {
        &self.checkpoints
    }

    /// The slot callers take leases from.
    pub(super) fn slot(&self) -> &Arc<Slot<PluginInstance>> {
        self.swap.slot()
    }

    /// The core of the live instance, if one is published.
    pub(crate) fn current_core(&self) -> Option<Arc<InstanceCore>> {
        self.slot()
            .current()
            .map(|instance| instance.core().clone())
    }

    /// The spec the engine config last asked for.
    pub(super) fn configured(&self) -> Arc<PluginUnitSpec> {
        self.configured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_configured(&self, spec: Arc<PluginUnitSpec>) {
        *self.configured.lock().unwrap_or_else(|e| e.into_inner()) = spec;
    }

    /// False when the live instance has failed or stopped, or nothing is published and
    /// nothing will be (the slot is down or closed).
    pub(super) fn is_serving(&self) -> bool {
        // Each look is a snapshot that a per-plugin reload may overtake: an instance found
        // stopped may have been swapped out (and stopped) just after it was read, and between
        // a reload's drain and its publish nothing is published while callers wait at the
        // gate. Neither is a failure. (Taking them for one made an engine reload at that
        // moment reload the plugin again, to the config's spec, undoing the per-plugin
        // reload.) An instance swapped out on every look is being replaced, not failing.
        for _ in 0..3 {
            let Some(core) = self.current_core() else {
                return self.slot().waits_when_empty();
            };
            if !matches!(core.phase(), Phase::Failed(_) | Phase::Stopped) {
                return true;
            }
            if core.is_current() {
                return false;
            }
        }
        true
    }

    /// Runs one reload through the slot's swap protocol, for the engine config (the types it
    /// provides were checked with the whole config). Ok when it activated; otherwise why not,
    /// in a few words.
    pub(super) async fn reload(&self, spec: &PluginUnitSpec, origin: Origin) -> Result<(), String> {
        let mut spec = spec.clone();
        spec.guard_types = false;
        spec.swap.probation = None;
        let request = ReloadRequest::<PluginUnitSpec>::new(spec).from(origin);
        let record = self.swap.reload(request).await.map_err(|e| e.to_string())?;
        match record.outcome {
            ReloadOutcome::Activated { .. } => Ok(()),
            ReloadOutcome::Rejected { error, .. } | ReloadOutcome::RolledBack { error } => {
                Err(error)
            }
            other => Err(other.name().to_owned()),
        }
    }

    /// A per-plugin reload to one `plugins:` entry (see [`PluginRef::reload`]): the entry is
    /// checked and resolved here, then swapped in by the slot's Supervisor, and the code file
    /// followed anew.
    ///
    /// [`PluginRef::reload`]: super::PluginRef::reload
    pub(super) async fn reload_entry(
        self: &Arc<Self>,
        request: ReloadRequest<PluginSpec>,
    ) -> Result<ReloadRecord, PluginError> {
        let (name, origin) = (self.name(), request.origin);
        let rejected = |error: String| Ok(self.refused(origin, error));
        if request.spec.name != name {
            let named = &request.spec.name;
            return rejected(format!("the spec names plugin {named:?}, not {name:?}"));
        }
        let (spec, restart) = match resolve_plugin(&request.spec, &*self.env) {
            Ok(resolved) => resolved,
            Err(errors) => return rejected(errors.to_string()),
        };
        let unit = PluginUnitSpec {
            spec,
            restart,
            // Swapped the way the config that configured it says.
            swap: self.configured().swap,
            guard_types: true,
            code: None,
        };
        let request = ReloadRequest {
            spec: Arc::new(unit),
            expected_generation: request.expected_generation,
            origin,
        };
        let record = self.swap.reload(request).await;
        self.follow_code();
        record.map_err(|e| PluginError::Unavailable(e.to_string()))
    }

    /// The instance as shown in status.
    pub(super) fn status(&self) -> PluginStatus {
        let live = self.slot().current();
        let (state, version, kind) = match &live {
            Some(instance) => (
                PluginState::of(&instance.core().phase()),
                instance.version().to_owned(),
                instance.unit_spec().spec.kind.clone(),
            ),
            None => (
                PluginState::Starting,
                String::new(),
                self.configured().spec.kind.clone(),
            ),
        };
        let record = &self.record;
        let (restarts, last_error) = match &live {
            Some(_) => (
                record.restarts.load(std::sync::atomic::Ordering::SeqCst),
                record.last_error_mut().clone(),
            ),
            None => (0, None),
        };
        let escalations = record.escalations.load(std::sync::atomic::Ordering::SeqCst);
        let last_escalation = lock(&record.last_escalation).clone();
        let serving = live
            .as_ref()
            .and_then(|instance| match instance.core().phase() {
                Phase::Running(serving) => Some(serving),
                _ => None,
            });
        let pid = serving.as_ref().and_then(|s| s.pid);
        let (last_reload, reloads) = self.history.summary();
        let version = match serving.and_then(|s| s.version) {
            Some(started) => started.to_string(),
            None => version,
        };
        PluginStatus {
            code: live.as_ref().and_then(|i| i.code().map(ToOwned::to_owned)),
            pid,
            name: self.name.to_string(),
            kind,
            version,
            state,
            generation: self.slot().generation().unwrap_or(0),
            restarts,
            last_error_at: last_error
                .as_ref()
                .map(|e| humantime::format_rfc3339_millis(e.at).to_string()),
            last_error_past: last_error.as_ref().is_some_and(|e| e.past),
            last_error: last_error.map(|e| e.message),
            escalations,
            last_escalation,
            checkpoint: self.checkpoints.status(),
            restart_group: lock(&self.restart_group).clone(),
            last_reload,
            reloads,
        }
    }

    /// A reload refused before its Supervisor saw it (its spec does not validate): recorded
    /// in the history, as `rejected` at the validate stage.
    pub(super) fn refused(&self, origin: Origin, error: String) -> ReloadRecord {
        let outcome = ReloadOutcome::Rejected {
            stage: Stage::Validate,
            error,
        };
        let generation = self.slot().generation().unwrap_or(0);
        let record = ReloadRecord::new(0, origin, outcome, generation);
        self.history.record(&record);
        record
    }

    /// Its reloads, oldest first (the latest 20).
    pub(super) fn history(&self) -> Vec<PluginReload> {
        self.history.reloads()
    }
}

/// The watched code file of `slot`'s instance now hashes to `hash`: reloads the instance unless
/// it already runs that code. False once the slot is gone (the watch ends).
async fn code_changed(slot: Weak<PluginSlot>, hash: String) -> bool {
    let Some(slot) = slot.upgrade() else {
        return false;
    };
    let Some(live) = slot.current_core() else {
        return true;
    };
    if live.unit_spec().code.as_deref() == Some(hash.as_str()) {
        return true;
    }
    tracing::info!(plugin = %slot.name, code = %hash, "the plugin's code changed on disk; reloading it");
    let request = ReloadRequest::new(live.unit_spec().spec.clone()).from(Origin::Watch);
    match slot.reload_entry(request).await {
        Ok(record) => {
            tracing::info!(plugin = %slot.name, outcome = %record.outcome.name(), "code reload finished")
        }
        Err(error) => tracing::warn!(plugin = %slot.name, %error, "code reload failed"),
    }
    // The reload has followed the instance's new code file, if it moved.
    true
}
