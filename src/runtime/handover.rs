//! What a binary upgrade needs from a runtime: its listening sockets, and every plugin
//! instance's state out of the old process and into the new one.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Runtime;
use crate::net::ListenerPool;
use crate::plugin::Checkpoint;

impl Runtime {
    /// The listener pool, whose sockets an upgrade hands to the new process.
    pub(crate) fn listeners(&self) -> &ListenerPool {
        self.context.listeners()
    }

    /// Every running plugin instance's state, each as the JSON the new process imports
    /// (`{"instance": name, "checkpoint": ...}`): through each instance's own export, so that
    /// plugins that never checkpoint hand their state over too. Take it once this process no
    /// longer serves calls.
    pub(crate) async fn export_plugins(&self, timeout: Duration) -> Vec<Value> {
        self.context
            .plugins()
            .export_all(timeout)
            .await
            .into_iter()
            .filter_map(|(instance, checkpoint)| {
                serde_json::to_value(Handed {
                    instance,
                    checkpoint,
                })
                .ok()
            })
            .collect()
    }

    /// Hands each state of [`Runtime::export_plugins`] to the running instance of its name,
    /// through its `migrate`; how many were taken. Refusals (another kind, a `migrate` that
    /// says no, a value that is not a handed-over state) are logged.
    pub(crate) async fn import_plugins(&self, states: Vec<Value>, timeout: Duration) -> usize {
        let handed: Vec<(String, Checkpoint)> = states
            .into_iter()
            .filter_map(|state| match serde_json::from_value::<Handed>(state) {
                Ok(handed) => Some((handed.instance, handed.checkpoint)),
                Err(error) => {
                    tracing::warn!(%error, "a handed-over plugin state is not one; left out");
                    None
                }
            })
            .collect();
        let reports = self.context.plugins().import_all(handed, timeout).await;
        reports.iter().filter(|r| r.outcome.is_ok()).count()
    }
}

/// One plugin instance's state as it crosses from the old process to the new one.
#[derive(Serialize, Deserialize)]
struct Handed {
    instance: String,
    checkpoint: Checkpoint,
}
