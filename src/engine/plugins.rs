//! The plugins of a config: which instances it declares, the types their kinds contribute,
//! and which of those types the config uses (so that a plugin reload cannot take one away).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use swapvisor_actors::{SwapMode, SwapSettings};

use super::Engine;
use crate::config::{ConfigErrors, Resolved, place, unknown_name};
use crate::extension::plugin::PluginBuild;
use crate::plugin::PluginUnitSpec;
use crate::registry::{Registry, Types};

/// One use of a type contributed by a plugin kind, so that a plugin reload can be refused
/// when it would take the type away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginTypeUse {
    /// `module`, `step` or `trigger`.
    pub(crate) kind: &'static str,
    pub(crate) type_name: String,
    /// The plugin kind that contributes it.
    pub(crate) plugin_kind: String,
    /// Where the config uses it.
    pub(crate) place: String,
}

/// How plugin instances are swapped under an engine config's reload settings.
pub(crate) fn plugin_swap_settings(reload: &SwapSettings) -> SwapSettings {
    SwapSettings {
        // A plugin hands its state over, so it is always started before the old one stops.
        // Probation applies to per-plugin reloads (a code swap); the plugin changes an engine
        // reload makes are on the engine's probation instead (see `PluginSlot::reload`).
        mode: SwapMode::StartFirst,
        ..*reload
    }
}

/// Contributions of plugin kinds are attributed to `plugin <kind>`.
pub(crate) const PLUGIN_CONTRIBUTOR: &str = "plugin ";

/// Checks the `plugins:` entries and gathers the types their kinds contribute. Returns the
/// registry to check the rest of the config against, the instance specs, and each instance's
/// contributor (its kind, or `<kind>:<name>` for a plugin whose types come from its own code).
pub(super) fn plan_plugins(
    resolved: &Resolved,
    base: &Registry,
    unexpanded: &HashSet<usize>,
    errors: &mut ConfigErrors,
) -> (Registry, Vec<Arc<PluginUnitSpec>>, HashMap<String, String>) {
    let mut registry = base.clone();
    let mut specs = Vec::with_capacity(resolved.config.plugins.len());
    let mut kinds = HashMap::new();
    let mut contributed: BTreeSet<String> = BTreeSet::new();
    let swap = plugin_swap_settings(&resolved.settings.reload);
    for (i, spec) in resolved.config.plugins.iter().enumerate() {
        let at = place::named_item("plugins", i, Some(&spec.name));
        let Some(factory) = base.plugin_factory(&spec.kind) else {
            errors.push(
                place::field(&at, "type"),
                unknown_name("plugin type", &spec.kind, "registered", base.plugin_kinds()),
            );
            continue;
        };
        kinds.insert(spec.name.clone(), spec.kind.clone());
        specs.push(Arc::new(PluginUnitSpec {
            spec: spec.clone(),
            restart: resolved.plugin_restarts[i],
            swap,
            guard_types: false,
            code: None,
        }));
        if unexpanded.contains(&i) {
            continue;
        }
        let config_at = place::field(&at, "config");
        let build = PluginBuild {
            name: &spec.name,
            config: &spec.config,
            place: &config_at,
            code: None,
        };
        let prototype = match super::plan::guarded(&config_at, || factory.build(&build)) {
            Ok(prototype) => prototype,
            Err(e) => {
                errors.0.extend(e.0);
                continue;
            }
        };
        // Each kind registers its types once, however many instances it has; a plugin whose
        // code is its own (a process plugin) contributes what that code offers, per instance,
        // as `<kind>:<name>`.
        let contributor = match prototype.code() {
            Some(_) => format!("{}:{}", spec.kind, spec.name),
            None => spec.kind.clone(),
        };
        kinds.insert(spec.name.clone(), contributor.clone());
        if contributed.insert(contributor.clone()) {
            let mut own = Types::new(&format!("{PLUGIN_CONTRIBUTOR}{contributor}"));
            let registered = prototype
                .register(&mut own)
                .and_then(|()| registry.absorb(&own));
            if let Err(error) = registered {
                errors.push(place::field(&at, "type"), error.to_string());
            }
        }
    }
    (registry, specs, kinds)
}

impl Engine {
    /// Checks that `provided` (the types a reloaded instance of plugin `name` would contribute)
    /// still covers every plugin-contributed type this engine uses; explains what would be
    /// lost otherwise.
    pub(crate) fn check_plugin_types(&self, name: &str, provided: &Types) -> Result<(), String> {
        let plan = &self.inner.plan;
        let Some(old_kind) = plan.plugin_kinds.get(name) else {
            return Ok(());
        };
        let still_there = plan
            .plugin_kinds
            .iter()
            .any(|(other, kind)| other != name && kind == old_kind);
        let lost: Vec<String> = plan
            .plugin_type_uses
            .iter()
            .filter(|u| &u.plugin_kind == old_kind && !still_there)
            .filter(|u| provided.contributor_of(u.kind, &u.type_name).is_none())
            .map(|u| format!("{} type {:?} (used by {})", u.kind, u.type_name, u.place))
            .collect();
        if lost.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "reloading plugin {name:?} would remove types the running config still uses: {}",
                lost.join("; ")
            ))
        }
    }
}
