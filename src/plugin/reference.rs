//! [`PluginRef`]: a stable address for one plugin instance.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde_json::Value;
use swapvisor_actors::{ReloadRecord, ReloadRequest, SupervisorMsg};

use super::history::PluginReload;
use super::instance::PluginInstance;
use super::slot::PluginSlot;
use super::status::PluginStatus;
use crate::config::PluginSpec;
use crate::extension::plugin::{PluginCall, PluginError};

/// How long a call waits for an answer (or for a restarting plugin) before it fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A stable address for one plugin instance: it survives the instance's crashes, restarts and
/// reloads. Cheap to clone.
#[derive(Clone)]
pub struct PluginRef {
    slot: Arc<PluginSlot>,
}

impl std::fmt::Debug for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PluginRef").field(&self.slot.name()).finish()
    }
}

/// A per-plugin reload whose spec is one `plugins:` entry; `PluginSpec` converts into one.
impl From<PluginSpec> for ReloadRequest<PluginSpec> {
    fn from(spec: PluginSpec) -> Self {
        ReloadRequest::new(spec)
    }
}

impl PluginRef {
    pub(super) fn new(slot: Arc<PluginSlot>) -> Self {
        Self { slot }
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        self.slot.name()
    }

    /// Calls `op` with `args` on whichever instance is live, and waits for the answer. During a
    /// reload the call waits at the gate and is served by the new instance; during a restart it
    /// waits for the restarted one.
    pub async fn call(&self, op: &str, args: Value) -> Result<Value, PluginError> {
        let instance = self.slot.slot().acquire().await.map_err(|e| {
            PluginError::Unavailable(format!("plugin {:?} is not running: {e}", self.name()))
        })?;
        instance
            .core()
            .call(PluginCall::new(op, args), CALL_TIMEOUT)
            .await
    }

    /// The instance as shown in status.
    pub fn status(&self) -> PluginStatus {
        self.slot.status()
    }

    /// Records a reload refused before it could be asked for (its entry did not parse), so
    /// that the history shows every outcome; the record answered.
    #[cfg(feature = "admin")]
    pub(crate) fn refused(&self, origin: swapvisor_actors::Origin, error: String) -> ReloadRecord {
        self.slot.refused(origin, error)
    }

    /// Its latest reloads (up to 20), oldest first, each with its outcome: the first
    /// activation, per-plugin reloads, engine reloads that changed its entry, reverts.
    pub fn history(&self) -> Vec<PluginReload> {
        self.slot.history()
    }

    /// Reloads this instance alone to `request`'s spec (one `plugins:` entry), through its
    /// slot's swap protocol: the new instance is built, started, and given the old one's state;
    /// calls queued or in flight meanwhile are each served once. A start failure leaves the old
    /// instance serving, state intact (`RolledBack`); a spec that would take away a type the
    /// live config uses is `Rejected`. The reload lasts until an engine reload changes this
    /// plugin's entry. Fails (`Unavailable`) when the instance has been removed, or when its
    /// swap Supervisor cannot be started or exits before answering.
    pub async fn reload(
        &self,
        request: impl Into<ReloadRequest<PluginSpec>>,
    ) -> Result<ReloadRecord, PluginError> {
        self.slot.reload_entry(request.into()).await
    }

    /// The instance's swap Supervisor, for actor systems: `SupervisorMsg::Reload` sent to it
    /// with a [`PluginUnitSpec`](super::PluginUnitSpec) is a per-plugin reload. It stays awake from then on (idle
    /// plugin slots otherwise hibernate their Supervisor).
    pub async fn supervisor(&self) -> Result<ActorRef<SupervisorMsg<PluginInstance>>, PluginError> {
        self.slot
            .swap
            .supervisor()
            .await
            .map_err(|e| PluginError::Unavailable(e.to_string()))
    }
}
