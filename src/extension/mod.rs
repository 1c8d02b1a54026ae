//! Extending the engine: the module, step and trigger types a config can use, and the plugin
//! kinds behind its `plugins:`.
//!
//! Every type is a *factory* registered under a name in the [`Registry`](crate::Registry). While
//! a config is built, the engine calls the factory of each `type:` it names with that entry's
//! `config:` (environment already expanded) and the entry's place in the document, for errors.
//! A factory has **no outside effects**: it decodes and checks settings
//! ([`decode_settings`]), compiles templates ([`StepBuild::template`]) and constructs the
//! value, but binds nothing and spawns nothing. That is what makes try-activate and
//! `swapvisor validate` safe. Resources are taken when the engine starts.
//!
//! - A [`Module`] is a long-lived part of an engine (a server, a connection pool): started in
//!   dependency order, stopped in reverse. A module that serves HTTP says so with
//!   [`Module::http_listener`], and takes its socket from [`Services::listeners`].
//! - A [`Step`] is one unit of work in a pipeline; its output is available to later steps.
//! - A trigger makes a pipeline run: an [`HttpRoute`] on a server module, or a [`TriggerTask`]
//!   that runs while the engine runs.
//! - A plugin kind (see [`crate::plugin`]) is a stateful service with its own actor; it may
//!   contribute module, step and trigger types of its own.
//!
//! ```
//! use futures::future::BoxFuture;
//! use serde::Deserialize;
//! use serde_json::{Value, json};
//! use swapvisor::config::ConfigErrors;
//! use swapvisor::extension::{Step, StepBuild, StepContext, StepError};
//! use swapvisor::{Config, Engine, Registry};
//!
//! /// `shout {word}`: outputs the word in capitals.
//! struct Shout(String);
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct ShoutSettings {
//!     word: String,
//! }
//!
//! fn build_shout(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
//!     let settings: ShoutSettings = build.settings()?;
//!     Ok(Box::new(Shout(settings.word.to_uppercase())))
//! }
//!
//! impl Step for Shout {
//!     fn run<'a>(&'a self, _: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
//!         Box::pin(std::future::ready(Ok(json!(self.0))))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut registry = Registry::with_builtins();
//! registry.contributing("my-app", |r| r.register_step("shout", build_shout)).unwrap();
//! let config = Config::parse(b"pipelines: { p: { steps: [{ name: s, type: shout, config: { word: hi } }] } }").unwrap();
//! let engine = Engine::build(&config, &registry).await.unwrap();
//! engine.start().await.unwrap();
//! assert_eq!(engine.execute("p", json!({})).await.unwrap(), json!("HI"));
//! engine.stop_now().await.unwrap();
//!
//! // A typo in the settings is an error that names its place.
//! let typo = Config::parse(b"pipelines: { p: { steps: [{ name: s, type: shout, config: { wrod: hi } }] } }").unwrap();
//! let error = Engine::build(&typo, &registry).await.unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     r#"pipelines.p.steps[0] (name "s").config.wrod: unknown field "wrod", expected "word""#
//! );
//! # });
//! ```

pub(crate) mod plugin;

#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
mod exchange;
#[cfg(feature = "runtime")]
pub(crate) mod jq;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
mod module;
#[cfg(feature = "runtime")]
mod services;
#[cfg(feature = "runtime")]
mod settings;
#[cfg(feature = "runtime")]
mod step;
#[cfg(feature = "runtime")]
pub mod template;
#[cfg(feature = "runtime")]
mod transaction;
#[cfg(feature = "runtime")]
mod trigger;
#[cfg(feature = "runtime")]
pub(crate) mod types;

#[cfg(feature = "runtime")]
pub use crate::net::listeners::{BoxError, StreamBody};
#[cfg(feature = "runtime")]
pub use error::{ExecuteError, ModuleError, StepError};
#[cfg(feature = "runtime")]
pub use exchange::HttpExchange;
#[cfg(feature = "runtime")]
pub use module::{Module, ModuleBuild, ModuleContext, ModuleDirectory, ModuleFactory};
#[cfg(feature = "runtime")]
pub use services::{PluginCalls, Services};
#[cfg(feature = "runtime")]
pub use settings::decode_settings;
#[cfg(feature = "runtime")]
pub use step::{Step, StepBuild, StepContext, StepFactory};
#[cfg(feature = "runtime")]
pub use transaction::{RunTransaction, Transaction, Transactions};
#[cfg(feature = "runtime")]
pub use trigger::{
    HttpRoute, PipelineRunner, StopSignal, TriggerBinding, TriggerBuild, TriggerFactory,
    TriggerTask,
};

#[cfg(feature = "runtime")]
pub use crate::net::limits::{ConnectionLimits, DescriptorBudget};
#[cfg(feature = "runtime")]
pub use crate::net::listeners::{ListenerKey, ListenerLease, ListenerPool};
