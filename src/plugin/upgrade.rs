//! Plugin state across processes: what a binary upgrade takes from the old process's
//! instances ([`PluginHost::export_all`]) and hands to the new process's
//! ([`PluginHost::import_all`]).
//!
//! Both go through the paths a reload uses, so that every plugin hands its state over, not
//! only those that checkpoint: the export is each running instance's `export_state` (or, for
//! an instance that crashed, its latest checkpoint), and the import is `migrate`, which decides
//! what it accepts. An instance that refuses keeps what it had; nothing is rolled back.

use std::time::Duration;

use serde::Serialize;
use swapvisor_actors::Unit;
use tokio::time::Instant;

use super::checkpoint::{Checkpoint, ImportCause};
use super::host::PluginHost;

/// What [`PluginHost::import_all`] did with one instance's checkpoint.
// The binary upgrade (its own change) is what calls these.
#[allow(dead_code)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImportReport {
    /// The instance.
    pub(crate) instance: String,
    /// The checkpoint's sequence number, as the old process numbered it.
    pub(crate) sequence: u64,
    /// Imported, or why not.
    pub(crate) outcome: Result<(), String>,
}

// The binary upgrade (its own change) is what calls these.
#[allow(dead_code)]
impl PluginHost {
    /// Every running instance's current state, through its own export (`export_state`, a
    /// process plugin's `state/export`), in start order, taken within `timeout` together. An
    /// instance that has crashed gives its latest checkpoint; one with nothing to give (or
    /// whose export fails, which is logged) is left out. Take it once the process no longer
    /// serves calls: a call answered after an instance's export is not in it.
    pub(crate) async fn export_all(&self, timeout: Duration) -> Vec<(String, Checkpoint)> {
        let deadline = Instant::now() + timeout;
        let exports = self.slots_in_order().into_iter().map(|slot| async move {
            let name = slot.name().to_owned();
            let instance = slot.slot().current()?;
            match instance.export_state(deadline).await {
                Ok(Some(mut checkpoint)) => {
                    // It crosses to another process as a checkpoint: offered, not insisted on.
                    checkpoint.exported = false;
                    Some((name, checkpoint))
                }
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(plugin = %name, %error, "the plugin's state is not handed to the new process");
                    None
                }
            }
        });
        futures::future::join_all(exports)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Hands each checkpoint to the running instance of its name through `migrate`, within
    /// `timeout` together: only to an instance of the kind that took it, and `migrate`
    /// decides the rest. One report per checkpoint, in the order given. An import taken
    /// becomes the instance's latest checkpoint when the plugin takes checkpoints; a refusal
    /// is logged, counted in its status, and leaves the instance as it was. Call it before
    /// the new process serves calls.
    pub(crate) async fn import_all(
        &self,
        checkpoints: Vec<(String, Checkpoint)>,
        timeout: Duration,
    ) -> Vec<ImportReport> {
        let deadline = Instant::now() + timeout;
        let slots = self.slots_in_order();
        let imports = checkpoints.into_iter().map(|(name, checkpoint)| {
            let slot = slots.iter().find(|slot| slot.name() == name).cloned();
            async move {
                let sequence = checkpoint.sequence;
                let instance = slot.as_ref().and_then(|slot| slot.slot().current());
                let outcome = match (&slot, instance) {
                    (Some(slot), Some(instance)) => {
                        let kind = &instance.unit_spec().spec.kind;
                        if *kind != checkpoint.kind {
                            let why = format!(
                                "the checkpoint was taken by plugin kind {:?}; plugin {name:?} is of kind {kind:?}",
                                checkpoint.kind
                            );
                            slot.checkpoints().refuse(why.clone());
                            Err(why)
                        } else {
                            let identity = instance.identity();
                            let state = checkpoint.state.clone();
                            let offered = instance
                                .offer(vec![checkpoint], ImportCause::Upgrade, deadline)
                                .await;
                            if offered.is_ok() {
                                slot.checkpoints().exported(&identity, state);
                            }
                            offered.map(drop)
                        }
                    }
                    _ => Err(format!("no instance named {name:?} runs")),
                };
                if let Err(why) = &outcome {
                    tracing::warn!(plugin = %name, sequence, "the old process's state was not imported: {why}");
                }
                ImportReport {
                    instance: name,
                    sequence,
                    outcome,
                }
            }
        });
        futures::future::join_all(imports).await
    }
}
