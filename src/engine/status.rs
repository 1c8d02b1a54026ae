//! What an engine shows of itself: where it is in its life, and its modules.

use serde::Serialize;
use serde_json::{Map, Value};

use super::Engine;

/// Where an engine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineState {
    /// Built, not started.
    Built,
    /// Starting its modules.
    Starting,
    /// Every module started.
    Running,
    /// Stopping its modules.
    Stopping,
    /// Stopped (after running, or after a failed start).
    Stopped,
}

/// One module as shown in status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct ModuleStatus {
    /// The module's name.
    pub name: String,
    /// Its module type, such as `http.server`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `started` or `stopped`.
    pub state: &'static str,
    /// Type-specific fields, such as `listening` for `http.server`.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl Engine {
    /// Where the engine is in its life.
    pub fn state(&self) -> EngineState {
        *self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the engine to `state`, keeping the context's count of running engines.
    pub(super) fn set_state(&self, state: EngineState) {
        let previous = std::mem::replace(
            &mut *self.inner.state.lock().unwrap_or_else(|e| e.into_inner()),
            state,
        );
        let census = self.inner.context.census();
        match (
            previous == EngineState::Running,
            state == EngineState::Running,
        ) {
            (false, true) => census.started(),
            (true, false) => census.stopped(),
            _ => {}
        }
    }

    /// The modules in start order, with their state and details.
    pub fn module_status(&self) -> Vec<ModuleStatus> {
        let started = self.inner.lifecycle.try_lock().map(|l| l.started).ok();
        let state = self.state();
        self.inner
            .plan
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| ModuleStatus {
                name: m.shared.spec.name.clone(),
                type_name: m.shared.spec.type_name.clone(),
                state: match started {
                    Some(n) if i < n => "started",
                    Some(_) => "stopped",
                    None if state == EngineState::Running => "started",
                    None => "changing",
                },
                details: m.shared.module.status(),
            })
            .collect()
    }

    /// The actual addresses of this engine's `http.server` modules, by module name.
    pub fn listening(&self) -> Vec<(String, String)> {
        listening(&self.module_status())
    }
}

/// The addresses `modules` listen on (their `listening` detail), as `(module name, address)`.
pub(crate) fn listening(modules: &[ModuleStatus]) -> Vec<(String, String)> {
    modules
        .iter()
        .filter_map(|m| {
            let address = m.details.get("listening")?.as_str()?.to_owned();
            Some((m.name.clone(), address))
        })
        .collect()
}
