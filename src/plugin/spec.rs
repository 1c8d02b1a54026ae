//! What a plugin instance is built from, and what one engine config asks of the plugins.

use std::sync::Arc;

use swapvisor_actors::SwapSettings;

use crate::config::{PluginSpec, RestartSettings, RestartStrategy};

/// What a plugin reload carries: the instance's spec (config expanded), its restart settings,
/// and the swap settings of the engine config it came from.
#[derive(Debug, Clone)]
pub struct PluginUnitSpec {
    /// The `plugins:` entry, with `${VAR}` expanded.
    pub spec: PluginSpec,
    /// Its restart settings, with defaults applied.
    pub restart: RestartSettings,
    /// Timeouts for swapping it.
    pub swap: SwapSettings,
    /// Check that the new instance still provides every type the live engine uses. Reloads
    /// made by an engine reload skip it: the new engine was checked as a whole.
    pub guard_types: bool,
    /// The code to run (see [`Plugin::code`](crate::plugin::Plugin::code)): `None` for what is
    /// installed now; set on the spec of a running instance, so that its restarts and a
    /// revert to it run the very code it ran.
    pub code: Option<String>,
}

/// Two specs are equal when they would build the same instance from the same config; the swap
/// timeouts are how it is swapped in, and the pinned code is what an instance already runs.
impl PartialEq for PluginUnitSpec {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && self.restart == other.restart
    }
}

impl PluginUnitSpec {
    /// A spec for `spec` with default swap settings, checked against the live engine's types.
    pub fn new(spec: PluginSpec, restart: RestartSettings) -> Self {
        Self {
            spec,
            restart,
            swap: SwapSettings::default(),
            guard_types: true,
            code: None,
        }
    }

    /// The instance's name.
    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }
}

/// The plugin instances one engine config declares, in config order, and how a crash among
/// them spreads (its `runtime.plugins.strategy`). It belongs to the engine's plan: each engine
/// brings its own, so a reload never changes the strategy that governs the old engine's
/// plugins.
#[derive(Debug, Clone, Default)]
pub(crate) struct PluginPlan {
    pub(crate) instances: Vec<Arc<PluginUnitSpec>>,
    pub(crate) strategy: RestartStrategy,
}
