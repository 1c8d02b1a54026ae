//! swapvisor: an actor-based supervision runtime for safe hot reload.
//!
//! ```
//! use serde_json::json;
//! use swapvisor::actors::ractor;
//! use swapvisor::engine::EngineSpec;
//! use swapvisor::{Config, Registry, ReloadOutcome, ReloadRequest, Runtime, Stage, SupervisorMsg};
//!
//! fn hello(version: &str) -> Config {
//!     let yaml = format!(
//!         "pipelines: {{ hello: {{ steps: [{{ name: r, type: step.set, config: {{ values: {{ version: {version} }} }} }}] }} }}"
//!     );
//!     Config::parse(yaml.as_bytes()).unwrap()
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     let runtime = Runtime::start(hello("v1"), Registry::with_builtins()).await.unwrap();
//!     assert_eq!(runtime.execute("hello", json!({})).await.unwrap(), json!({"version": "v1"}));
//!
//!     // Send a reload message to the Supervisor actor yourself, with ractor's `call!`.
//!     let supervisor = runtime.supervisor();
//!     let request = ReloadRequest::new(EngineSpec::from(hello("v2")));
//!     let record = ractor::call!(supervisor, SupervisorMsg::Reload, request).unwrap();
//!     assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
//!     assert_eq!(runtime.execute("hello", json!({})).await.unwrap(), json!({"version": "v2"}));
//!
//!     // A config that fails to build is rejected; v2 never stops serving.
//!     let broken = Config::parse(b"modules: [{ name: f, type: fault.inject, config: { failOn: build } }]").unwrap();
//!     let outcome = runtime.reload(broken).await.unwrap();
//!     assert!(matches!(outcome, ReloadOutcome::Rejected { stage: Stage::Build, .. }));
//!     assert_eq!(runtime.execute("hello", json!({})).await.unwrap(), json!({"version": "v2"}));
//!
//!     runtime.shutdown().await.unwrap();
//! }
//! ```
//!
//! swapvisor runs a config-driven [`Engine`] (modules such as HTTP servers, and pipelines of
//! templated steps) under a supervision tree of ractor actors, and keeps it serving while its
//! configuration changes. Its promise: **a reload never leaves you worse off than before you
//! asked.**
//!
//! - A config that fails to build is [`ReloadOutcome::Rejected`] while the current engine keeps
//!   serving.
//! - A config that builds but fails to start is [`ReloadOutcome::RolledBack`].
//! - Every outcome is one typed [`ReloadOutcome`], recorded in [`Runtime::status`].
//!
//! Where to start:
//! - [`Runtime`]: start, reload, try-activate, execute, status, shutdown.
//! - [`config`]: the config model and its errors; docs/CONFIG.md has every field.
//! - [`engine`]: modules, steps and triggers, for writing your own types.
//! - [`actors`]: the generic swap protocol (Supervisor, Candidate, Active, Slot).

#![warn(missing_docs)]

pub mod admin;
pub mod builtin;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod net;
pub mod plugin;
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
