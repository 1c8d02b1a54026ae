//! What the runtime lends to modules and steps: shared listeners and, later, plugins.

use crate::net::ListenerPool;

/// Runtime services handed to modules at start and to steps when they run. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Services {
    listeners: ListenerPool,
}

impl Services {
    /// Services for an engine used on its own, outside a runtime: a private listener pool that
    /// routes requests to that engine.
    pub fn standalone() -> Self {
        Self::default()
    }

    /// Services around an existing listener pool (the runtime's).
    pub fn with_listeners(listeners: ListenerPool) -> Self {
        Self { listeners }
    }

    /// The listener pool.
    pub fn listeners(&self) -> &ListenerPool {
        &self.listeners
    }
}
