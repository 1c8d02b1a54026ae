//! [`Types`]: module, step and trigger factories by type name, each with who contributed it.
//!
//! A type name belongs to exactly one contributor (the built-in `core` set, a plugin kind, or
//! the embedding application): registering it again is an error that names both, so two
//! plugins can never silently shadow each other. The [`Registry`](crate::Registry) keeps its
//! types in one of these, and a plugin kind adds its own through
//! [`Plugin::register`](crate::plugin::Plugin::register).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::module::ModuleFactory;
use super::step::StepFactory;
use super::trigger::TriggerFactory;

/// The contributor of types registered outside [`Registry::contributing`](crate::Registry::contributing).
pub const APPLICATION: &str = "application";

/// A type registered twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} type {type_name:?} is registered twice: first by {first:?}, again by {second:?}")]
pub struct RegistryError {
    /// `module`, `step`, `trigger` or `plugin`.
    pub kind: &'static str,
    /// The contested type name.
    pub type_name: String,
    /// Who registered it first (and keeps it).
    pub first: String,
    /// Who tried to register it again.
    pub second: String,
}

/// A factory with the name of whoever registered it.
pub(crate) struct Registered<F: ?Sized> {
    pub(crate) contributor: Arc<str>,
    pub(crate) factory: Arc<F>,
}

impl<F: ?Sized> Clone for Registered<F> {
    fn clone(&self) -> Self {
        Self {
            contributor: self.contributor.clone(),
            factory: self.factory.clone(),
        }
    }
}

/// Factories of one kind by type name.
pub(crate) type Table<F> = BTreeMap<String, Registered<F>>;

/// Adds `factory` under `type_name` unless the name is taken.
pub(crate) fn insert<F: ?Sized>(
    table: &mut Table<F>,
    kind: &'static str,
    type_name: &str,
    contributor: &Arc<str>,
    factory: Arc<F>,
) -> Result<(), RegistryError> {
    if let Some(existing) = table.get(type_name) {
        return Err(RegistryError {
            kind,
            type_name: type_name.to_owned(),
            first: existing.contributor.to_string(),
            second: contributor.to_string(),
        });
    }
    table.insert(
        type_name.to_owned(),
        Registered {
            contributor: contributor.clone(),
            factory,
        },
    );
    Ok(())
}

/// Module, step and trigger factories by type name, with their contributors. Cheap to clone:
/// factories are shared.
#[derive(Clone)]
pub struct Types {
    pub(crate) modules: Table<dyn ModuleFactory>,
    pub(crate) steps: Table<dyn StepFactory>,
    pub(crate) triggers: Table<dyn TriggerFactory>,
    /// Who the next registrations are attributed to.
    pub(crate) contributor: Arc<str>,
}

impl std::fmt::Debug for Types {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Types")
            .field("contributor", &self.contributor)
            .field("modules", &self.modules.len())
            .field("steps", &self.steps.len())
            .field("triggers", &self.triggers.len())
            .finish()
    }
}

impl Types {
    /// No types; registrations are attributed to `contributor`.
    pub fn new(contributor: &str) -> Self {
        Self {
            modules: BTreeMap::new(),
            steps: BTreeMap::new(),
            triggers: BTreeMap::new(),
            contributor: Arc::from(contributor),
        }
    }

    /// Registers a module type.
    pub fn register_module(
        &mut self,
        type_name: &str,
        factory: impl ModuleFactory,
    ) -> Result<(), RegistryError> {
        let factory = Arc::new(factory);
        insert(
            &mut self.modules,
            "module",
            type_name,
            &self.contributor,
            factory,
        )
    }

    /// Registers a step type.
    pub fn register_step(
        &mut self,
        type_name: &str,
        factory: impl StepFactory,
    ) -> Result<(), RegistryError> {
        let factory = Arc::new(factory);
        insert(
            &mut self.steps,
            "step",
            type_name,
            &self.contributor,
            factory,
        )
    }

    /// Registers a trigger type.
    pub fn register_trigger(
        &mut self,
        type_name: &str,
        factory: impl TriggerFactory,
    ) -> Result<(), RegistryError> {
        let factory = Arc::new(factory);
        insert(
            &mut self.triggers,
            "trigger",
            type_name,
            &self.contributor,
            factory,
        )
    }

    /// Who contributed the `kind` (`module`, `step` or `trigger`) type `type_name`.
    pub fn contributor_of(&self, kind: &str, type_name: &str) -> Option<&str> {
        let contributor = match kind {
            "module" => &self.modules.get(type_name)?.contributor,
            "step" => &self.steps.get(type_name)?.contributor,
            "trigger" => &self.triggers.get(type_name)?.contributor,
            _ => return None,
        };
        Some(contributor)
    }

    /// Adds every type of `other`, keeping their contributors; a name both have is an error
    /// naming both contributors.
    pub(crate) fn absorb(&mut self, other: &Types) -> Result<(), RegistryError> {
        fn all<F: ?Sized>(
            into: &mut Table<F>,
            from: &Table<F>,
            kind: &'static str,
        ) -> Result<(), RegistryError> {
            from.iter().try_for_each(|(name, registered)| {
                let factory = registered.factory.clone();
                insert(into, kind, name, &registered.contributor, factory)
            })
        }
        all(&mut self.modules, &other.modules, "module")?;
        all(&mut self.steps, &other.steps, "step")?;
        all(&mut self.triggers, &other.triggers, "trigger")
    }
}
