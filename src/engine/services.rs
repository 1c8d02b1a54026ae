//! What the runtime lends to modules and steps: shared listeners and plugins.

use crate::net::ListenerPool;
use crate::plugin::PluginHost;

/// Runtime services handed to modules at start and to steps when they run. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Services {
    listeners: ListenerPool,
    plugins: PluginHost,
}

impl Services {
    /// Services for an engine used on its own, outside a runtime: a private listener pool that
    /// routes requests to that engine, and a private plugin host.
    pub fn standalone() -> Self {
        Self::default()
    }

    /// Services around a runtime's listener pool and plugin host.
    pub fn new(listeners: ListenerPool, plugins: PluginHost) -> Self {
        Self { listeners, plugins }
    }

    /// The listener pool.
    pub fn listeners(&self) -> &ListenerPool {
        &self.listeners
    }

    /// The plugin host: call plugins by name through it.
    pub fn plugins(&self) -> &PluginHost {
        &self.plugins
    }
}
