//! One plugin instance's slot: the live instance, the Supervisor that swaps it, and what the
//! config asked for.

use std::sync::{Arc, Mutex};

use swapvisor_actors::{HibernatingSupervisor, Origin, ReloadOutcome, ReloadRequest, Slot};

use super::core::{CrashRecord, InstanceCore, Phase};
use super::instance::PluginInstance;
use super::spec::PluginUnitSpec;
use super::status::{PluginState, PluginStatus};
use crate::config::SharedEnv;

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
    /// Where `${VAR}` values of per-plugin reloads come from.
    pub(super) env: SharedEnv,
}

impl PluginSlot {
    pub(super) fn new(
        spec: Arc<PluginUnitSpec>,
        swap: HibernatingSupervisor<PluginInstance>,
        record: Arc<CrashRecord>,
        env: SharedEnv,
    ) -> Self {
        Self {
            name: Arc::from(spec.name()),
            swap,
            configured: Mutex::new(spec),
            record,
            env,
        }
    }

    /// The instance's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
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

    /// False when the live instance has failed or stopped (or none is published).
    pub(super) fn is_serving(&self) -> bool {
        self.current_core()
            .is_some_and(|core| !matches!(core.phase(), Phase::Failed(_) | Phase::Stopped))
    }

    /// Runs one reload through the slot's swap protocol, for the engine config (the types it
    /// provides were checked with the whole config). Ok when it activated; otherwise why not,
    /// in a few words.
    pub(super) async fn reload(&self, spec: &PluginUnitSpec, origin: Origin) -> Result<(), String> {
        let mut spec = spec.clone();
        spec.guard_types = false;
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
        let (restarts, last_error) = match &live {
            Some(_) => (
                self.record
                    .restarts
                    .load(std::sync::atomic::Ordering::SeqCst),
                self.record
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            ),
            None => (0, None),
        };
        PluginStatus {
            name: self.name.to_string(),
            kind,
            version,
            state,
            generation: self.slot().generation().unwrap_or(0),
            restarts,
            last_error,
        }
    }
}
