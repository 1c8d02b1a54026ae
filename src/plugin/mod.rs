//! Plugins: stateful services that run as their own supervised actors.
//!
//! A plugin author implements [`Plugin`] and writes no actor code. The runtime wraps each
//! plugin instance named in a config's `plugins:` in its own actor, behind a stable
//! [`PluginRef`] that survives crashes, restarts and reloads, and supervises it the way an
//! Erlang/OTP supervisor would (see docs/PLUGINS.md):
//!
//! - calls reach the instance one at a time, in order, through its mailbox, so a plugin keeps
//!   plain state in `&mut self`;
//! - a panic (or [`PluginError::Crash`]) restarts it under its restart policy, with backoff;
//! - a per-plugin reload swaps in a new instance and hands it the old one's state through
//!   [`Plugin::export_state`] and [`Plugin::migrate`], with no call lost or served twice.
//!
//! ```
//! use futures::future::BoxFuture;
//! use serde_json::{Value, json};
//! use swapvisor::plugin::{Plugin, PluginCall, PluginError};
//!
//! /// Remembers the last value it was given.
//! #[derive(Default)]
//! struct Memo {
//!     last: Value,
//! }
//!
//! impl Plugin for Memo {
//!     fn name(&self) -> &str {
//!         "memo"
//!     }
//!
//!     fn version(&self) -> &str {
//!         "1.0.0"
//!     }
//!
//!     fn handle(&mut self, call: PluginCall) -> BoxFuture<'_, Result<Value, PluginError>> {
//!         let result = match call.op.as_str() {
//!             "put" => Ok(std::mem::replace(&mut self.last, call.args)),
//!             "get" => Ok(self.last.clone()),
//!             other => Err(PluginError::unknown_op(other, &["put", "get"])),
//!         };
//!         Box::pin(std::future::ready(result))
//!     }
//!
//!     fn export_state(&mut self) -> Option<Value> {
//!         Some(self.last.clone())
//!     }
//!
//!     fn migrate(&mut self, previous: Value) -> BoxFuture<'_, Result<(), PluginError>> {
//!         self.last = previous;
//!         Box::pin(async { Ok(()) })
//!     }
//! }
//! # let _ = json!(null);
//! ```

mod counter;
mod host;
mod instance;
mod restart;

use std::fmt;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use counter::Counter;
pub use host::{Attachment, PluginHold, PluginHost, PluginRef, PluginState, PluginStatus};
pub use instance::{
    InstanceCore, PluginInstance, PluginSummary, PluginUnitContext, PluginUnitSpec,
};

use crate::config::ConfigErrors;
use crate::registry::{Registry, RegistryError};

/// A call to a plugin: an operation name and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginCall {
    /// The operation, such as `increment`.
    pub op: String,
    /// Its arguments (null when none).
    pub args: Value,
}

impl PluginCall {
    /// A call of `op` with `args`.
    pub fn new(op: impl Into<String>, args: Value) -> Self {
        Self {
            op: op.into(),
            args,
        }
    }

    /// Decodes `args` into `T`, or explains what was wrong with them.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_value(self.args.clone())
            .map_err(|e| PluginError::Failed(format!("invalid arguments for {:?}: {e}", self.op)))
    }
}

/// How a plugin call went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The call failed; the plugin goes on serving.
    #[error("{0}")]
    Failed(String),
    /// The plugin is broken: the call fails and the instance exits abnormally, to be restarted
    /// under its restart policy (like a panic).
    #[error("plugin crashed: {0}")]
    Crash(String),
    /// The plugin is done: the call succeeds with null and the instance exits normally
    /// (restarted only when its policy is `permanent`).
    #[error("plugin exited")]
    Exit,
    /// The call could not be delivered (no such plugin, the plugin failed or is stopping).
    #[error("{0}")]
    Unavailable(String),
}

impl PluginError {
    /// `unknown operation "x" (operations: a, b)`.
    pub fn unknown_op(op: &str, known: &[&str]) -> Self {
        PluginError::Failed(format!(
            "unknown operation {op:?} (operations: {})",
            known.join(", ")
        ))
    }
}

/// What a plugin gets when it starts.
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// The instance's name in the config.
    pub name: String,
}

/// A plugin instance: its identity, the types it contributes, and its behaviour as an actor.
///
/// The runtime calls, in order: [`register`](Plugin::register) (once per plugin kind, while a
/// config is built), [`start`](Plugin::start), then [`handle`](Plugin::handle) for each call,
/// one at a time, and [`stop`](Plugin::stop). On a reload the old instance's
/// [`export_state`](Plugin::export_state) (after its last call) feeds the new instance's
/// [`migrate`](Plugin::migrate) (before its first call). Constructing a plugin (its factory)
/// must have no outside effects; take resources in `start`.
pub trait Plugin: Send + 'static {
    /// The plugin kind's name, such as `counter`.
    fn name(&self) -> &str;

    /// The plugin's version, shown in status.
    fn version(&self) -> &str;

    /// Contributes module, step and trigger types. Registrations are attributed to the plugin
    /// kind; a type name another contributor already has is an error naming both.
    fn register(&self, registry: &mut Registry) -> Result<(), RegistryError> {
        let _ = registry;
        Ok(())
    }

    /// Takes resources before the first call.
    fn start(&mut self, context: &PluginContext) -> BoxFuture<'_, Result<(), PluginError>> {
        let _ = context;
        Box::pin(async { Ok(()) })
    }

    /// Answers one call.
    fn handle(&mut self, call: PluginCall) -> BoxFuture<'_, Result<Value, PluginError>>;

    /// Gives resources back after the last call.
    fn stop(&mut self) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async { Ok(()) })
    }

    /// The state to hand to the instance that replaces this one (after this one's last call).
    fn export_state(&mut self) -> Option<Value> {
        None
    }

    /// Takes over the state of the instance this one replaces (before its first call). It is
    /// asynchronous so that a migration waiting on something can be bounded by the swap's
    /// timeout: one that runs past it rolls the reload back.
    fn migrate(&mut self, previous: Value) -> BoxFuture<'_, Result<(), PluginError>> {
        let _ = previous;
        Box::pin(async { Ok(()) })
    }
}

/// What a plugin factory gets to build one instance.
#[derive(Debug)]
pub struct PluginBuild<'a> {
    /// The instance's name.
    pub name: &'a str,
    /// The instance's `config:`, with `${VAR}` expanded.
    pub config: &'a Value,
    /// The place of `config` in the document, for errors.
    pub place: &'a str,
}

impl PluginBuild<'_> {
    /// Decodes `config` into the plugin's settings; see [`crate::engine::decode_settings`].
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, ConfigErrors> {
        crate::engine::decode_settings(self.config, self.place)
    }
}

/// Builds instances of one plugin kind. No outside effects. Closures
/// `Fn(&PluginBuild) -> Result<Box<dyn Plugin>, ConfigErrors>` are factories.
pub trait PluginFactory: Send + Sync + 'static {
    /// Builds the instance described by `build`.
    fn build(&self, build: &PluginBuild<'_>) -> Result<Box<dyn Plugin>, ConfigErrors>;
}

impl<F> PluginFactory for F
where
    F: Fn(&PluginBuild<'_>) -> Result<Box<dyn Plugin>, ConfigErrors> + Send + Sync + 'static,
{
    fn build(&self, build: &PluginBuild<'_>) -> Result<Box<dyn Plugin>, ConfigErrors> {
        self(build)
    }
}

impl fmt::Debug for dyn Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("version", &self.version())
            .finish()
    }
}
