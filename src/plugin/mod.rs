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
//! - a per-plugin reload ([`PluginRef::reload`]) swaps in a new instance and hands it the old
//!   one's state through [`Plugin::export_state`] and [`Plugin::migrate`], with no call lost or
//!   served twice.
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
//!     fn kind(&self) -> &str {
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
//!     fn export_state(&mut self) -> BoxFuture<'_, Result<Option<Value>, PluginError>> {
//!         Box::pin(std::future::ready(Ok(Some(self.last.clone()))))
//!     }
//!
//!     fn migrate(&mut self, previous: Value) -> BoxFuture<'_, Result<(), PluginError>> {
//!         self.last = previous;
//!         Box::pin(async { Ok(()) })
//!     }
//! }
//! # let _ = json!(null);
//! ```
//!
//! How it is put together, lowest first, one concept a file, each file using only those before
//! it (tests/layering/ checks that, and that this list names every file in order): the
//! example plugin `counter`; the `spec` an instance is built from; a `checkpoint` of its state
//! and the `checkpoints` its slot keeps (in memory and on disk); the `history` of its
//! reloads; the `messages` its actor is sent; the instance's `core` (its actor's phase); its
//! `status`; the `link` between actors and the restarter (the restarter's messages); the
//! `actor` itself; the `instance` as a unit of the swap protocol; its `slot`; the `reference`
//! callers hold; the restart `groups`; the `restart`er; the `changes` an engine's start
//! makes; the `host` that holds them all; and the state every instance hands to a new process
//! in an `upgrade`.
//!
//! A plugin that wants its state to survive crashes, reverts and restarts of the process
//! checkpoints it: [`PluginContext::checkpoint`] (a process plugin sends `state/checkpoint`).
//! The next instance after a crash, a revert or a process restart is offered the latest
//! checkpoint through [`Plugin::migrate`] before its first call; see docs/PLUGINS.md for what
//! is kept, and what is lost, in each case.

#[cfg(feature = "runtime")]
mod actor;
#[cfg(feature = "runtime")]
mod changes;
#[cfg(feature = "runtime")]
mod checkpoint;
#[cfg(feature = "runtime")]
mod checkpoints;
#[cfg(feature = "runtime")]
mod core;
mod counter;
#[cfg(feature = "runtime")]
mod groups;
#[cfg(feature = "runtime")]
mod history;
#[cfg(feature = "runtime")]
mod host;
#[cfg(feature = "runtime")]
mod instance;
#[cfg(feature = "runtime")]
mod link;
#[cfg(feature = "runtime")]
mod messages;
#[cfg(feature = "runtime")]
mod reference;
#[cfg(feature = "runtime")]
mod restart;
#[cfg(feature = "runtime")]
mod slot;
#[cfg(feature = "runtime")]
mod spec;
#[cfg(feature = "runtime")]
mod status;
// Only the binary's upgrade takes plugin state to another process.
#[cfg(feature = "cli")]
mod upgrade;

#[cfg(feature = "runtime")]
pub use checkpoint::{
    Checkpoint, CheckpointStatus, CheckpointSummary, ImportCause, ImportedCheckpoint,
};
#[cfg(feature = "runtime")]
pub use history::PluginReload;
#[cfg(feature = "runtime")]
pub use instance::{PluginInstance, PluginSummary};
#[cfg(feature = "runtime")]
pub use reference::PluginRef;
#[cfg(feature = "runtime")]
pub use spec::PluginUnitSpec;
#[cfg(feature = "runtime")]
pub use status::{PluginState, PluginStatus, RestartGroupStatus};

#[cfg(feature = "runtime")]
pub(crate) use host::{Attachment, PluginHost};
#[cfg(feature = "runtime")]
pub(crate) use spec::PluginPlan;

#[cfg(feature = "runtime")]
pub use crate::extension::plugin::{PluginBuild, PluginFactory};

pub use crate::extension::plugin::{
    CheckpointError, DEFAULT_CHECKPOINT_LIMIT, DirectCall, DirectCalls, Plugin, PluginCall,
    PluginContext, PluginError,
};
#[cfg(feature = "serve")]
pub use crate::process::{serve, serve_with};
pub use counter::Counter;
