//! What the runtime lends to modules and steps: shared listeners and plugins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::net::ListenerPool;
use crate::plugin::PluginHost;

/// Runtime services handed to modules at start and to steps when they run. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Services {
    listeners: ListenerPool,
    plugins: PluginHost,
    census: Arc<EngineCensus>,
}

/// How many engines built with these services are running: 1 in steady state, 2 briefly while
/// a start-first swap drains the old one.
#[derive(Debug, Default)]
pub struct EngineCensus {
    running: AtomicUsize,
}

impl EngineCensus {
    pub(crate) fn started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn stopped(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Engines running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

impl Services {
    /// Services for an engine used on its own, outside a runtime: a private listener pool that
    /// routes requests to that engine, and a private plugin host.
    pub fn standalone() -> Self {
        Self::default()
    }

    /// Services around a runtime's listener pool and plugin host.
    pub fn new(listeners: ListenerPool, plugins: PluginHost) -> Self {
        Self {
            listeners,
            plugins,
            census: Arc::default(),
        }
    }

    /// How many engines built with these services are running.
    pub fn census(&self) -> &EngineCensus {
        &self.census
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
