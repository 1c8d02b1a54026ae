//! Process plugins from both ends: the [wire protocol](protocol) a plugin executable speaks
//! over its stdin and stdout (docs/PLUGIN_PROTOCOL.md), and [`serve`], which turns any
//! [`Plugin`](crate::plugin::Plugin) into such an executable.
//!
//! The runtime's side, the `process` plugin kind, is in the built-in plugin kinds.

pub mod protocol;
#[cfg(feature = "serve")]
mod serve;

#[cfg(feature = "serve")]
pub use serve::{serve, serve_with};
