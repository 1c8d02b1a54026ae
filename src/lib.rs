//! swapvisor: an actor-based supervision runtime for safe hot reload.
//!
//! ```
//! use serde_json::json;
//! use swapvisor::{Config, Registry, ReloadOutcome, Runtime, Stage};
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
//!     // Reload: the new config is built, started, and published; v1 drains and stops.
//!     let record = runtime.reload(hello("v2")).await.unwrap();
//!     assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
//!     assert_eq!(runtime.execute("hello", json!({})).await.unwrap(), json!({"version": "v2"}));
//!
//!     // A config that fails to build is rejected; v2 never stops serving.
//!     let broken = Config::parse(b"modules: [{ name: f, type: fault.inject, config: { failOn: build } }]").unwrap();
//!     let record = runtime.reload(broken).await.unwrap();
//!     assert!(matches!(record.outcome, ReloadOutcome::Rejected { stage: Stage::Build, .. }));
//!     assert_eq!(runtime.execute("hello", json!({})).await.unwrap(), json!({"version": "v2"}));
//!
//!     runtime.shutdown().await.unwrap();
//! }
//! ```
//!
//! swapvisor runs a config-driven [`Engine`] (modules such as HTTP servers, and pipelines of
//! templated steps) and the plugins it uses under a supervision tree of ractor actors, and
//! keeps them serving while their configuration changes. Its promise: **a reload never leaves
//! you worse off than before you asked.**
//!
//! - A config that fails to build is [`ReloadOutcome::Rejected`] while the current engine keeps
//!   serving.
//! - A config that builds but fails to start is [`ReloadOutcome::RolledBack`].
//! - A single plugin can be reloaded alone ([`plugin::PluginRef::reload`]) and keeps its state.
//! - Every outcome is one typed [`ReloadOutcome`], recorded in [`Runtime::status`].
//!
//! Actor systems talk to the same Supervisor by message. [`Runtime::supervisor`] gives its
//! `ActorRef`, and ractor's `call!` does the rest:
//!
//! ```
//! # use swapvisor::{Config, Registry, Reload, ReloadOutcome, Runtime, SupervisorMsg};
//! use swapvisor::actors::ractor::call;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let config = |v: &str| Config::parse(format!("pipelines: {{ p: {{ steps: [{{ name: s, type: step.set, config: {{ values: {{ v: {v} }} }} }}] }} }}").as_bytes()).unwrap();
//! let runtime = Runtime::start(config("v1"), Registry::with_builtins()).await.unwrap();
//! let supervisor = runtime.supervisor();
//! // Compare-and-swap: applied only if generation 1 is still the live one.
//! let request = Reload::new(config("v2")).expecting(1);
//! let record = call!(supervisor, SupervisorMsg::Reload, request).unwrap();
//! assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
//! runtime.shutdown().await.unwrap();
//! # });
//! ```
//!
//! Where to go next:
//! - [`Runtime`]: start, reload, try-activate, execute, status, plugins, shutdown.
//! - [`config`]: the config model and its errors; docs/CONFIG.md has every field.
//! - [`extension`]: writing module, step and trigger types; [`plugin`]: writing plugin kinds.
//! - [`process`]: the line protocol of process plugins (executables in any language, swapped
//!   for new code live), and `serve`, which makes any [`plugin::Plugin`] such an executable.
//! - [`admin`]: the admin HTTP API the `swapvisor` binary serves, for serving it yourself.
//! - [`actors`]: the generic swap protocol (Supervisor, Candidate, Active, Slot), for
//!   swapping units of your own.
//! - [`metrics`]: the handle a module or plugin registers its own metrics with.
//! - `fleet` (the opt-in `fleet` feature): several nodes reloaded all or nothing. It turns on
//!   ractor's `cluster` feature for the whole build, so it stays off by default: with the
//!   default features your own actors keep plain message types.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod builtin;
pub mod extension;
pub mod plugin;
pub mod process;

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "fleet")]
pub mod fleet;

#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub mod config;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub mod engine;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub mod metrics;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub mod net;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub mod registry;
#[cfg(feature = "runtime")]
mod runtime;
// Tokens and cookies: the admin API's and the fleet's.
#[cfg(any(feature = "admin", feature = "fleet"))]
mod secret;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub mod state;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub mod watch;

#[cfg(feature = "runtime")]
pub use config::Config;
#[cfg(feature = "runtime")]
pub use engine::Engine;
#[cfg(feature = "runtime")]
pub use registry::Registry;
#[cfg(feature = "runtime")]
pub use runtime::{
    Observer, Reload, Runtime, RuntimeBuilder, RuntimeError, RuntimeStatus, TryActivateResult,
};
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub use swapvisor_actors as actors;
#[cfg(feature = "runtime")]
pub use swapvisor_actors::{
    BuildFailure, CommitRequest, Origin, Prepared, ReloadOutcome, ReloadRecord, ReloadRequest,
    RunState, Stage, SupervisorMsg, SwapMode,
};
