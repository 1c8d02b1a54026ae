//! The registry: which module, step and trigger types and which plugin kinds exist, and who
//! contributed each.
//!
//! Types come from *contributors*: the built-in `core` set, plugin kinds, or the embedding
//! application. A type name belongs to exactly one contributor; registering it again is an
//! error that names both, so two plugins can never silently shadow each other.
//!
//! ```
//! use swapvisor::Registry;
//!
//! let registry = Registry::with_builtins();
//! assert!(registry.module_types().contains(&"http.server"));
//! assert_eq!(registry.contributor_of("module", "http.server"), Some("core"));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::extension::plugin::PluginFactory;
use crate::extension::types::{Registered, Table, insert};
use crate::extension::{ModuleFactory, StepFactory, TriggerFactory};

pub use crate::extension::types::{APPLICATION, RegistryError, Types};

/// Module, step and trigger factories by type name, and plugin factories by kind. Cheap to
/// clone: factories are shared.
#[derive(Clone)]
pub struct Registry {
    types: Types,
    plugins: Table<dyn PluginFactory>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("modules", &self.module_types())
            .field("steps", &self.step_types())
            .field("triggers", &self.trigger_types())
            .field("plugins", &self.plugin_kinds())
            .finish()
    }
}

impl Registry {
    /// An empty registry. [`Registry::with_builtins`] has the built-in types.
    pub fn new() -> Self {
        Self {
            types: Types::new(APPLICATION),
            plugins: BTreeMap::new(),
        }
    }

    /// Runs `register` with every registration attributed to `contributor`.
    pub fn contributing<R>(
        &mut self,
        contributor: &str,
        register: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let previous = std::mem::replace(&mut self.types.contributor, Arc::from(contributor));
        let result = register(self);
        self.types.contributor = previous;
        result
    }

    /// Registers a module type.
    pub fn register_module(
        &mut self,
        type_name: &str,
        factory: impl ModuleFactory,
    ) -> Result<(), RegistryError> {
        self.types.register_module(type_name, factory)
    }

    /// Registers a step type.
    pub fn register_step(
        &mut self,
        type_name: &str,
        factory: impl StepFactory,
    ) -> Result<(), RegistryError> {
        self.types.register_step(type_name, factory)
    }

    /// Registers a trigger type.
    pub fn register_trigger(
        &mut self,
        type_name: &str,
        factory: impl TriggerFactory,
    ) -> Result<(), RegistryError> {
        self.types.register_trigger(type_name, factory)
    }

    /// Registers a plugin kind: `plugins:` entries with `type: <kind>` are built by `factory`.
    pub fn register_plugin(
        &mut self,
        kind: &str,
        factory: impl PluginFactory,
    ) -> Result<(), RegistryError> {
        let factory = Arc::new(factory);
        insert(
            &mut self.plugins,
            "plugin",
            kind,
            &self.types.contributor,
            factory,
        )
    }

    /// Removes the `kind` (`module`, `step`, `trigger` or `plugin`) type `type_name`; true when
    /// it was registered. For a registry that must not offer a built-in: one for untrusted
    /// configs without the `process` plugin kind (which runs executables), or a fuzzer without
    /// `fault.inject` (which can hang a build on purpose).
    pub fn unregister(&mut self, kind: &str, type_name: &str) -> bool {
        let types = &mut self.types;
        match kind {
            "module" => types.modules.remove(type_name).is_some(),
            "step" => types.steps.remove(type_name).is_some(),
            "trigger" => types.triggers.remove(type_name).is_some(),
            "plugin" => self.plugins.remove(type_name).is_some(),
            _ => false,
        }
    }

    /// Registered plugin kinds, sorted.
    pub fn plugin_kinds(&self) -> Vec<&str> {
        self.plugins.keys().map(String::as_str).collect()
    }

    /// Registered module type names, sorted.
    pub fn module_types(&self) -> Vec<&str> {
        self.types.modules.keys().map(String::as_str).collect()
    }

    /// Registered step type names, sorted.
    pub fn step_types(&self) -> Vec<&str> {
        self.types.steps.keys().map(String::as_str).collect()
    }

    /// Registered trigger type names, sorted.
    pub fn trigger_types(&self) -> Vec<&str> {
        self.types.triggers.keys().map(String::as_str).collect()
    }

    /// Who contributed the `kind` (`module`, `step`, `trigger` or `plugin`) type `type_name`.
    pub fn contributor_of(&self, kind: &str, type_name: &str) -> Option<&str> {
        match kind {
            "plugin" => Some(&self.plugins.get(type_name)?.contributor),
            _ => self.types.contributor_of(kind, type_name),
        }
    }

    /// Every type a contributor registered, as `(kind, type name)` pairs, sorted by kind.
    pub fn types_of(&self, contributor: &str) -> Vec<(&'static str, &str)> {
        fn of<'t, F: ?Sized>(
            kind: &'static str,
            table: &'t Table<F>,
            contributor: &str,
        ) -> Vec<(&'static str, &'t str)> {
            table
                .iter()
                .filter(|(_, r)| &*r.contributor == contributor)
                .map(|(name, _)| (kind, name.as_str()))
                .collect()
        }
        let mut types = of("module", &self.types.modules, contributor);
        types.extend(of("step", &self.types.steps, contributor));
        types.extend(of("trigger", &self.types.triggers, contributor));
        types
    }

    pub(crate) fn module_factory(&self, type_name: &str) -> Option<&Arc<dyn ModuleFactory>> {
        factory(&self.types.modules, type_name)
    }

    pub(crate) fn step_factory(&self, type_name: &str) -> Option<&Arc<dyn StepFactory>> {
        factory(&self.types.steps, type_name)
    }

    pub(crate) fn trigger_factory(&self, type_name: &str) -> Option<&Arc<dyn TriggerFactory>> {
        factory(&self.types.triggers, type_name)
    }

    pub(crate) fn plugin_factory(&self, kind: &str) -> Option<&Arc<dyn PluginFactory>> {
        factory(&self.plugins, kind)
    }

    /// Adds the types a plugin kind contributed, keeping their contributors; a name both have
    /// is an error naming both contributors.
    pub(crate) fn absorb(&mut self, contributed: &Types) -> Result<(), RegistryError> {
        self.types.absorb(contributed)
    }
}

fn factory<'t, F: ?Sized>(table: &'t Table<F>, name: &str) -> Option<&'t Arc<F>> {
    table
        .get(name)
        .map(|registered: &Registered<F>| &registered.factory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::{Step, StepBuild};

    fn noop_step(_: &StepBuild<'_>) -> Result<Box<dyn Step>, crate::config::ConfigErrors> {
        Err(crate::config::ConfigErrors::default())
    }

    #[test]
    fn a_type_registered_twice_names_both_contributors() {
        let mut registry = Registry::with_builtins();
        let error = registry
            .contributing("my-plugin", |r| r.register_step("step.set", noop_step))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"step type "step.set" is registered twice: first by "core", again by "my-plugin""#
        );
        // The first registration is kept.
        assert_eq!(registry.contributor_of("step", "step.set"), Some("core"));
    }

    #[test]
    fn type_lists_are_sorted() {
        let mut registry = Registry::new();
        registry.register_step("b.step", noop_step).unwrap();
        registry.register_step("a.step", noop_step).unwrap();
        assert_eq!(registry.step_types(), ["a.step", "b.step"]);
        assert_eq!(registry.contributor_of("step", "a.step"), Some(APPLICATION));
    }
}
