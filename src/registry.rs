//! The registry: which module, step and trigger types exist, and who contributed each.
//!
//! Types come from *contributors*: the built-in `core` set, plugins, or the embedding
//! application. A type name belongs to exactly one contributor; registering it again is an error
//! that names both, so two plugins can never silently shadow each other.
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

use crate::engine::{ModuleFactory, StepFactory, TriggerFactory};
use crate::plugin::PluginFactory;

/// The contributor of types registered outside [`Registry::contributing`].
pub const APPLICATION: &str = "application";

/// A type registered twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} type {type_name:?} is registered twice: first by {first:?}, again by {second:?}")]
pub struct RegistryError {
    /// `module`, `step` or `trigger`.
    pub kind: &'static str,
    /// The contested type name.
    pub type_name: String,
    /// Who registered it first (and keeps it).
    pub first: String,
    /// Who tried to register it again.
    pub second: String,
}

struct Entry<F: ?Sized> {
    contributor: Arc<str>,
    factory: Arc<F>,
}

impl<F: ?Sized> Clone for Entry<F> {
    fn clone(&self) -> Self {
        Self {
            contributor: self.contributor.clone(),
            factory: self.factory.clone(),
        }
    }
}

/// Module, step and trigger factories by type name. Cheap to clone: factories are shared.
#[derive(Clone)]
pub struct Registry {
    modules: BTreeMap<String, Entry<dyn ModuleFactory>>,
    steps: BTreeMap<String, Entry<dyn StepFactory>>,
    triggers: BTreeMap<String, Entry<dyn TriggerFactory>>,
    plugins: BTreeMap<String, Entry<dyn PluginFactory>>,
    contributor: Arc<str>,
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

fn insert<F: ?Sized>(
    map: &mut BTreeMap<String, Entry<F>>,
    kind: &'static str,
    type_name: &str,
    contributor: &Arc<str>,
    factory: Arc<F>,
) -> Result<(), RegistryError> {
    if let Some(existing) = map.get(type_name) {
        return Err(RegistryError {
            kind,
            type_name: type_name.to_owned(),
            first: existing.contributor.to_string(),
            second: contributor.to_string(),
        });
    }
    map.insert(
        type_name.to_owned(),
        Entry {
            contributor: contributor.clone(),
            factory,
        },
    );
    Ok(())
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            modules: BTreeMap::new(),
            steps: BTreeMap::new(),
            triggers: BTreeMap::new(),
            plugins: BTreeMap::new(),
            contributor: Arc::from(APPLICATION),
        }
    }

    /// A registry holding the built-in types, contributed by `core`.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry
            .contributing(crate::builtin::CONTRIBUTOR, crate::builtin::register)
            // The built-in names are distinct constants, and the registry starts empty.
            .expect("built-in type names are unique");
        registry
    }

    /// Runs `register` with every registration attributed to `contributor`.
    pub fn contributing<R>(
        &mut self,
        contributor: &str,
        register: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let previous = std::mem::replace(&mut self.contributor, Arc::from(contributor));
        let result = register(self);
        self.contributor = previous;
        result
    }

    /// Registers a module type.
    pub fn register_module(
        &mut self,
        type_name: &str,
        factory: impl ModuleFactory,
    ) -> Result<(), RegistryError> {
        insert(
            &mut self.modules,
            "module",
            type_name,
            &self.contributor,
            Arc::new(factory),
        )
    }

    /// Registers a step type.
    pub fn register_step(
        &mut self,
        type_name: &str,
        factory: impl StepFactory,
    ) -> Result<(), RegistryError> {
        insert(
            &mut self.steps,
            "step",
            type_name,
            &self.contributor,
            Arc::new(factory),
        )
    }

    /// Registers a trigger type.
    pub fn register_trigger(
        &mut self,
        type_name: &str,
        factory: impl TriggerFactory,
    ) -> Result<(), RegistryError> {
        insert(
            &mut self.triggers,
            "trigger",
            type_name,
            &self.contributor,
            Arc::new(factory),
        )
    }

    /// Registers a plugin kind: `plugins:` entries with `type: <kind>` are built by `factory`.
    pub fn register_plugin(
        &mut self,
        kind: &str,
        factory: impl PluginFactory,
    ) -> Result<(), RegistryError> {
        insert(
            &mut self.plugins,
            "plugin",
            kind,
            &self.contributor,
            Arc::new(factory),
        )
    }

    /// Registered plugin kinds, sorted.
    pub fn plugin_kinds(&self) -> Vec<&str> {
        self.plugins.keys().map(String::as_str).collect()
    }

    /// Registered module type names, sorted.
    pub fn module_types(&self) -> Vec<&str> {
        self.modules.keys().map(String::as_str).collect()
    }

    /// Registered step type names, sorted.
    pub fn step_types(&self) -> Vec<&str> {
        self.steps.keys().map(String::as_str).collect()
    }

    /// Registered trigger type names, sorted.
    pub fn trigger_types(&self) -> Vec<&str> {
        self.triggers.keys().map(String::as_str).collect()
    }

    /// Who contributed the `kind` (`module`, `step` or `trigger`) type `type_name`.
    pub fn contributor_of(&self, kind: &str, type_name: &str) -> Option<&str> {
        let contributor = match kind {
            "module" => &self.modules.get(type_name)?.contributor,
            "step" => &self.steps.get(type_name)?.contributor,
            "trigger" => &self.triggers.get(type_name)?.contributor,
            "plugin" => &self.plugins.get(type_name)?.contributor,
            _ => return None,
        };
        Some(contributor)
    }

    /// Every type a contributor registered, as `(kind, type name)` pairs, sorted by kind.
    pub fn types_of(&self, contributor: &str) -> Vec<(&'static str, &str)> {
        let modules = self
            .modules
            .iter()
            .map(|(n, e)| ("module", n, e.contributor.clone()));
        let steps = self
            .steps
            .iter()
            .map(|(n, e)| ("step", n, e.contributor.clone()));
        let triggers = self
            .triggers
            .iter()
            .map(|(n, e)| ("trigger", n, e.contributor.clone()));
        modules
            .chain(steps)
            .chain(triggers)
            .filter(|(_, _, c)| &**c == contributor)
            .map(|(kind, name, _)| (kind, name.as_str()))
            .collect()
    }

    pub(crate) fn module_factory(&self, type_name: &str) -> Option<&Arc<dyn ModuleFactory>> {
        self.modules.get(type_name).map(|e| &e.factory)
    }

    pub(crate) fn step_factory(&self, type_name: &str) -> Option<&Arc<dyn StepFactory>> {
        self.steps.get(type_name).map(|e| &e.factory)
    }

    pub(crate) fn trigger_factory(&self, type_name: &str) -> Option<&Arc<dyn TriggerFactory>> {
        self.triggers.get(type_name).map(|e| &e.factory)
    }

    pub(crate) fn plugin_factory(&self, kind: &str) -> Option<&Arc<dyn PluginFactory>> {
        self.plugins.get(kind).map(|e| &e.factory)
    }

    /// Adds every module, step and trigger type of `other` (plugin contributions), keeping
    /// their contributors; a name both have is an error naming both contributors.
    pub(crate) fn absorb(&mut self, other: &Registry) -> Result<(), RegistryError> {
        for (name, entry) in &other.modules {
            insert(
                &mut self.modules,
                "module",
                name,
                &entry.contributor,
                entry.factory.clone(),
            )?;
        }
        for (name, entry) in &other.steps {
            insert(
                &mut self.steps,
                "step",
                name,
                &entry.contributor,
                entry.factory.clone(),
            )?;
        }
        for (name, entry) in &other.triggers {
            insert(
                &mut self.triggers,
                "trigger",
                name,
                &entry.contributor,
                entry.factory.clone(),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Step, StepBuild};

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
