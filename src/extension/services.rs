//! What the runtime lends to modules and steps: its listeners and its plugins.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::plugin::PluginError;
use crate::net::ListenerPool;

/// Calls plugin instances by name: what a runtime's plugins offer the modules and steps of its
/// engines.
pub trait PluginCalls: Send + Sync + 'static {
    /// Calls `op` with `args` on the instance named `plugin`, and waits for the answer.
    fn call<'a>(
        &'a self,
        plugin: &'a str,
        op: &'a str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, PluginError>>;
}

/// Runtime services handed to modules at start and to steps when they run. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    listeners: ListenerPool,
    plugins: Arc<dyn PluginCalls>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Services around a listener pool and a runtime's plugins.
    pub(crate) fn new(listeners: ListenerPool, plugins: Arc<dyn PluginCalls>) -> Self {
        Self { listeners, plugins }
    }

    /// The listener pool: take a listener with [`ListenerPool::acquire`] at start, release it
    /// at stop.
    pub fn listeners(&self) -> &ListenerPool {
        &self.listeners
    }

    /// The plugin instances the config declares, to call by name.
    pub fn plugins(&self) -> &dyn PluginCalls {
        &*self.plugins
    }
}
