//! Modules: the long-lived parts of an engine, such as servers.
//!
//! A module type is a [`ModuleFactory`] in the [`Registry`](crate::Registry). The engine calls
//! the factory while it builds, and the factory must have **no outside effects**: it decodes
//! and checks settings and constructs the module, but binds nothing and spawns nothing. That is
//! what makes try-activate and `swapvisor validate` safe. Resources are taken in
//! [`Module::start`] and given back in [`Module::stop`].

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::error::ModuleError;
use super::metrics::MetricsHandle;
use super::services::Services;
use super::transaction::Transactions;
use crate::config::{ConfigError, ConfigErrors, EnvLookup};
use crate::net::ListenerKey;

/// A running part of an engine.
///
/// The engine calls [`prepare`](Module::prepare) once while building, then
/// [`start`](Module::start) and [`stop`](Module::stop) at most once each, in dependency order
/// (stop in reverse). A module may be started again after a stop only if its type documents
/// that it can.
pub trait Module: Any + Send + Sync {
    /// Finishes construction with asynchronous checks. It belongs to the build, so it must
    /// have no outside effects. Most modules have nothing to do here.
    fn prepare(&self) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }

    /// Takes resources and begins serving.
    fn start<'a>(&'a self, context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>>;

    /// Finishes in-flight work until `deadline`, then gives resources back.
    fn stop(&self, deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>>;

    /// Extra fields shown for this module in status (for example the bound address).
    fn status(&self) -> Map<String, Value> {
        Map::new()
    }

    /// Whether a reload that leaves this module's config (and its dependencies') unchanged may
    /// carry the running instance into the new engine instead of building and starting a new
    /// one. True by default: the instance keeps its state and connections across the reload.
    /// Return false where an unchanged config must still mean a fresh instance (a module that
    /// reads outside input, such as a file, only when it is built).
    fn carry_over(&self) -> bool {
        true
    }

    /// The listener this module serves HTTP on, if it is a server. The engine routes the
    /// `http` triggers that name this module to that listener.
    fn http_listener(&self) -> Option<&ListenerKey> {
        None
    }

    /// What this module lends to the steps that name it (an upstream's connection pool, a
    /// store's connections): see [`ModuleDirectory::lend`]. A carried module lends the same
    /// handle to the new engine's steps, so what it holds survives the reload.
    fn lend(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }

    /// How this module runs a pipeline's steps in one transaction, for the pipelines whose
    /// `transaction:` names it (see [`super::Transactions`]). None: it cannot.
    fn transactions(&self) -> Option<Arc<dyn Transactions>> {
        None
    }
}

/// The modules of the engine being built, as steps see them while they are built.
pub struct ModuleDirectory<'a> {
    modules: Vec<(&'a str, &'a str, &'a dyn Module)>,
}

impl std::fmt::Debug for ModuleDirectory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.modules
                    .iter()
                    .map(|(name, type_name, _)| (name, type_name)),
            )
            .finish()
    }
}

impl<'a> ModuleDirectory<'a> {
    /// A directory of `(name, type, module)`.
    pub(crate) fn new(modules: Vec<(&'a str, &'a str, &'a dyn Module)>) -> Self {
        Self { modules }
    }

    /// What the module `name`, of type `type_name`, lends to steps (see [`Module::lend`]), for
    /// the setting at `place`. An unknown name, a module of another type or one that lends no
    /// `T` is a config error at `place` naming the modules that would do.
    pub fn lend<T: Any + Send + Sync>(
        &self,
        name: &str,
        type_name: &str,
        place: &str,
    ) -> Result<Arc<T>, ConfigErrors> {
        let of_type = |t: &str, _: &dyn Module| t == type_name;
        let (found_type, module) =
            self.find(name, place, of_type, (type_name, "modules of that type"))?;
        if found_type != type_name {
            let names = crate::config::list_or_none(&self.fitting(of_type));
            return Err(ConfigError::new(
                place,
                format!("module {name:?} is a {found_type}, not a {type_name} ({type_name} modules: {names})"),
            )
            .into());
        }
        module
            .lend()
            .and_then(|lent| lent.downcast::<T>().ok())
            .ok_or_else(|| {
                ConfigError::new(
                    place,
                    format!("module {name:?} ({type_name}) lends nothing steps can use"),
                )
                .into()
            })
    }

    /// What the module `name` lends, of whatever type it is, when that is a `T`: for a step
    /// that takes any of several module types (a store, SQLite or PostgreSQL). Else a config
    /// error at `place` naming the modules that lend a `T`, as `kind` says (`"store"`).
    pub fn lend_any<T: Any + Send + Sync>(
        &self,
        name: &str,
        kind: &str,
        place: &str,
    ) -> Result<Arc<T>, ConfigErrors> {
        let lends = |_: &str, module: &dyn Module| module.lend().is_some_and(|l| l.is::<T>());
        let plural = format!("{kind}s");
        let (found_type, module) = self.find(name, place, lends, (kind, &plural))?;
        module
            .lend()
            .and_then(|lent| lent.downcast::<T>().ok())
            .ok_or_else(|| {
                let names = crate::config::list_or_none(&self.fitting(lends));
                ConfigError::new(
                    place,
                    format!("module {name:?} is a {found_type}, not a {kind} ({plural}: {names})"),
                )
                .into()
            })
    }

    /// How the module `name` runs transactions (see [`Module::transactions`]), for the
    /// `transaction:` at `place`: a config error naming the modules that can, when it is
    /// unknown or cannot.
    pub(crate) fn transactions(
        &self,
        name: &str,
        place: &str,
    ) -> Result<Arc<dyn Transactions>, ConfigErrors> {
        let can = |_: &str, module: &dyn Module| module.transactions().is_some();
        let what = ("store", "modules that run transactions");
        let (found_type, module) = self.find(name, place, can, what)?;
        module.transactions().ok_or_else(|| {
            let names = crate::config::list_or_none(&self.fitting(can));
            ConfigError::new(
                place,
                format!("module {name:?} is a {found_type}, which runs no transactions (modules that do: {names})"),
            )
            .into()
        })
    }

    /// The module `name` with its type; unknown, a config error at `place` that names the
    /// modules that `fit`, as `what` says (`(kind, label of the list)`).
    fn find(
        &self,
        name: &str,
        place: &str,
        fit: impl Fn(&str, &dyn Module) -> bool,
        (kind, label): (&str, &str),
    ) -> Result<(&'a str, &'a dyn Module), ConfigErrors> {
        match self.modules.iter().find(|(n, _, _)| *n == name) {
            Some((_, found_type, module)) => Ok((found_type, *module)),
            None => {
                let message = crate::config::unknown_name(kind, name, label, self.fitting(fit));
                Err(ConfigError::new(place, message).into())
            }
        }
    }

    /// The names of the modules that `fit`.
    fn fitting(&self, fit: impl Fn(&str, &dyn Module) -> bool) -> Vec<&'a str> {
        let fitting = self.modules.iter().filter(|(_, t, m)| fit(t, *m));
        fitting.map(|(n, _, _)| *n).collect()
    }
}

/// What a module gets when it starts.
#[derive(Debug, Clone)]
pub struct ModuleContext {
    /// The module's name in the config.
    pub name: String,
    /// Runtime services: the listener pool and plugins.
    pub services: Services,
    /// Where the module registers metrics of its own, labelled `module="<name>"`: see
    /// [`crate::extension::metrics`].
    pub metrics: MetricsHandle,
}

/// What a factory gets to build one module.
pub struct ModuleBuild<'a> {
    /// The module's name.
    pub name: &'a str,
    /// The module's type, as registered.
    pub type_name: &'a str,
    /// The entry's `config:`, with `${VAR}` already expanded.
    pub config: &'a serde_json::Value,
    /// The place of `config` in the document, for errors.
    pub place: &'a str,
    /// Where the engine reads `${VAR}` values (the runtime's environment), for a setting that
    /// names a variable to read at build, such as `storage.postgres`'s `urlEnv`.
    pub env: EnvLookup<'a>,
}

impl std::fmt::Debug for ModuleBuild<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment is a closure: named, not shown.
        f.debug_struct("ModuleBuild")
            .field("name", &self.name)
            .field("type_name", &self.type_name)
            .field("config", &self.config)
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

/// Builds modules of one type. Closures `Fn(&ModuleBuild) -> Result<Box<dyn Module>, _>` are
/// factories.
pub trait ModuleFactory: Send + Sync + 'static {
    /// Builds what `build` describes, or explains with places what is wrong with its
    /// config. No outside effects.
    fn build(&self, build: &ModuleBuild<'_>) -> Result<Box<dyn Module>, ConfigErrors>;
}

super::settings::factory_impls!(ModuleBuild, ModuleFactory, Box<dyn Module>);
