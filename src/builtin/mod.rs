//! The built-in types, contributed to every [`Registry::with_builtins`](crate::Registry) by
//! `core`. Their settings are documented in docs/CONFIG.md.
//!
//! | kind | type | settings |
//! |---|---|---|
//! | module | `http.server` | `address` |
//! | module | `fault.inject` | `failOn`, `mode`, `message` |
//! | trigger | `http` | `server`, `method`, `path` |
//! | trigger | `schedule` | `every` |
//! | step | `step.set` | `values` |
//! | step | `step.log` | `message`, `level` |
//! | step | `step.json_response` | `status`, `body`, `headers` |
//! | step | `step.delay` | `duration` |
//! | step | `step.fail` | `message` |
//! | step | `step.plugin_call` | `plugin`, `op`, `args` |
//! | plugin | `counter` | `start` |

mod fault;
mod http_server;
mod schedule;
mod steps;

pub use fault::{FaultMode, FaultStage};
pub use http_server::HttpServer;

use crate::registry::{Registry, RegistryError};

/// The contributor name of the built-in types.
pub const CONTRIBUTOR: &str = "core";

/// Registers every built-in type.
pub fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.register_module("http.server", http_server::build_server)?;
    registry.register_module("fault.inject", fault::build)?;
    registry.register_trigger("http", http_server::build_trigger)?;
    registry.register_trigger("schedule", schedule::build)?;
    registry.register_plugin(crate::plugin::Counter::KIND, crate::plugin::Counter::build)?;
    steps::register(registry)
}
