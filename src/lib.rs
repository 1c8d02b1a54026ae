//! swapvisor: an actor-based supervision runtime for safe hot reload.
//!
//! swapvisor runs a config-driven [`Engine`] (modules such as HTTP servers, and pipelines of
//! steps) and keeps it serving while its configuration changes. Its promise: a reload never
//! leaves you worse off than before you asked.

#![warn(missing_docs)]

pub mod builtin;
pub mod config;
pub mod engine;
pub mod net;
pub mod registry;
pub mod runtime;
mod try_activate;

pub use config::Config;
pub use engine::Engine;
pub use registry::Registry;
pub use runtime::{Runtime, RuntimeError, RuntimeOptions, RuntimeStatus};
pub use swapvisor_actors as actors;
pub use swapvisor_actors::{
    Origin, ReloadOutcome, ReloadRecord, ReloadRequest, RunState, Stage, SupervisorMsg, SwapMode,
};
pub use try_activate::TryActivateResult;
