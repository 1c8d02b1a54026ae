//! The types an engine registers and the types its config uses, as `validate` and
//! try-activate report them.

use serde::Serialize;
use swapvisor_actors::Changes;

use crate::registry::Registry;

/// Module, step and trigger type names, each list sorted; empty lists are left out of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct TypeLists {
    /// Module types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub module_types: Vec<String>,
    /// Step types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub step_types: Vec<String>,
    /// Trigger types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trigger_types: Vec<String>,
}

impl TypeLists {
    /// The types `registry` offers.
    pub fn registered(registry: &Registry) -> Self {
        let sorted = |names: Vec<&str>| {
            let mut names: Vec<String> = names.into_iter().map(str::to_owned).collect();
            names.sort_unstable();
            names
        };
        Self {
            module_types: sorted(registry.module_types()),
            step_types: sorted(registry.step_types()),
            trigger_types: sorted(registry.trigger_types()),
        }
    }
}

/// What try-activate and `validate` report of a built engine: the types it registers, as the
/// seed contract has them (`moduleTypes`, `stepTypes`, `triggerTypes`: so a caller can ask
/// whether the candidate offers `step.foo`), and the types its config uses (`usedTypes`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct EngineTypes {
    /// Every type the engine registers: the registry's own and its plugins' contributions.
    #[serde(flatten)]
    pub registered: TypeLists,
    /// The types the config uses.
    pub used_types: TypeLists,
    /// What the config would change against the live engine, for a candidate built in a
    /// runtime (try-activate); absent for an engine checked on its own (`validate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}
