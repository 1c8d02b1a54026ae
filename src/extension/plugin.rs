//! Plugin kinds: stateful services that run as their own supervised actors.
//!
//! A plugin author implements [`Plugin`] and writes no actor code; a [`PluginFactory`] builds
//! one instance from a `plugins:` entry. The runtime side (instances, restarts, reloads with
//! state) is in [`crate::plugin`], which is where these items are documented for authors.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[cfg(feature = "runtime")]
use super::types::{RegistryError, Types};
#[cfg(feature = "runtime")]
use crate::config::ConfigErrors;

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

/// What a plugin gets when it starts. Cheap to clone: a plugin that checkpoints keeps a clone.
#[derive(Clone)]
pub struct PluginContext {
    /// The instance's name in the config.
    pub name: String,
    /// Where the instance registers metrics of its own, labelled `plugin="<name>"`: see
    /// [`crate::extension::metrics`]. A process plugin's child gets a detached one (its
    /// metrics are not shown).
    #[cfg(feature = "runtime")]
    pub metrics: crate::extension::metrics::MetricsHandle,
    /// Where [`PluginContext::checkpoint`] hands states: the runtime's checkpoint store, or
    /// (served as a process) the line protocol. `None`: they are not kept.
    pub(crate) checkpoints: Option<CheckpointSink>,
    /// What the instance's slot keeps of the code its instances ran. `None`: nothing is kept
    /// (a context outside a runtime).
    #[cfg(feature = "runtime")]
    pub(crate) code: Option<Arc<CodeHold>>,
}

/// Takes one checkpoint: the runtime's store, or `serve`'s pending notification.
pub(crate) type CheckpointSink = Arc<dyn Fn(Value) -> Result<(), CheckpointError> + Send + Sync>;

/// The default bound on one checkpoint's state, as compact JSON: 1 MiB.
pub const DEFAULT_CHECKPOINT_LIMIT: usize = 1 << 20;

/// Why [`PluginContext::checkpoint`] did not keep a state. Nothing else happens: the plugin
/// serves on, and the latest checkpoint kept stays what it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The state is larger than the bound (as compact JSON).
    #[error("the checkpoint is larger than {limit} bytes as JSON; not kept")]
    TooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
    /// Nothing keeps checkpoints for this instance: it has been replaced by another one, or it
    /// runs outside a runtime.
    #[error("the checkpoint was not kept: {0}")]
    NotKept(String),
}

impl PluginContext {
    /// A context outside any runtime, for a plugin's own tests: its metrics are shown nowhere
    /// and its checkpoints are not kept.
    pub fn detached(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            #[cfg(feature = "runtime")]
            metrics: crate::extension::metrics::MetricsHandle::detached(),
            checkpoints: None,
            #[cfg(feature = "runtime")]
            code: None,
        }
    }

    /// Records `state` as this instance's latest checkpoint: the state a crash restart, a
    /// probation revert or a restart of the whole process hands to the next instance's
    /// [`Plugin::migrate`] (see docs/PLUGINS.md). Cheap and non-blocking: the runtime keeps the
    /// latest in memory at once, and writes it to its state folder (if it has one) in the
    /// background; a later checkpoint replaces an earlier one. Taken before a call's answer
    /// returns, it covers that call. A state larger than the bound (1 MiB of JSON by default)
    /// is refused, logged and counted.
    pub fn checkpoint(&self, state: Value) -> Result<(), CheckpointError> {
        match &self.checkpoints {
            Some(sink) => sink(state),
            None => Err(CheckpointError::NotKept(format!(
                "plugin {:?} runs where no checkpoints are kept",
                self.name
            ))),
        }
    }
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("PluginContext");
        debug.field("name", &self.name);
        #[cfg(feature = "runtime")]
        debug.field("metrics", &self.metrics);
        debug
            .field("checkpoints", &self.checkpoints.is_some())
            .finish()
    }
}

/// The size of `state` as compact JSON, or `None` when it is larger than `limit`: counting
/// stops there, so a huge state costs no more than `limit` bytes of encoding to refuse.
#[cfg(any(feature = "runtime", feature = "serve"))]
pub(crate) fn json_size(state: &Value, limit: usize) -> Option<usize> {
    struct Count {
        bytes: usize,
        limit: usize,
    }
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes += buf.len();
            if self.bytes > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count { bytes: 0, limit };
    serde_json::to_writer(&mut count, state)
        .ok()
        .map(|()| count.bytes)
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
    /// The plugin's kind, such as `counter`: the `type` of the `plugins:` entries it serves.
    fn kind(&self) -> &str;

    /// The plugin's version, shown in status.
    fn version(&self) -> &str;

    #[cfg(feature = "runtime")]
    /// Contributes module, step and trigger types, attributed to `plugin <kind>`: while a
    /// config is built, once per plugin kind it uses. A type name another contributor already
    /// has is an error naming both.
    fn register(&self, types: &mut Types) -> Result<(), RegistryError> {
        let _ = types;
        Ok(())
    }

    #[cfg(feature = "runtime")]
    /// Whether [`register`](Plugin::register) already contributes every type this plugin will
    /// offer. A plugin that learns its types only when it starts (a process plugin that
    /// declares no `stepTypes` and whose code has not started in this process) answers
    /// `false`: a per-plugin reload of it is then checked against the live config once it has
    /// started, so that a start that fails is reported as that failure, not as types missing.
    fn types_known(&self) -> bool {
        true
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

    /// The state to hand to the instance that replaces this one (after this one's last call),
    /// or `None` when there is none. An error, a panic or running past the swap's timeout
    /// rolls the reload back: this instance serves on with its state. It is asynchronous so
    /// that a plugin whose state lives elsewhere (a process plugin's child) can fetch it.
    fn export_state(&mut self) -> BoxFuture<'_, Result<Option<Value>, PluginError>> {
        Box::pin(async { Ok(None) })
    }

    /// Takes over the state of the instance this one replaces (before its first call). It is
    /// asynchronous so that a migration waiting on something can be bounded by the swap's
    /// timeout: one that runs past it rolls the reload back.
    fn migrate(&mut self, previous: Value) -> BoxFuture<'_, Result<(), PluginError>> {
        let _ = previous;
        Box::pin(async { Ok(()) })
    }

    /// The operations [`handle`](Plugin::handle) answers, for a process plugin's `initialize`
    /// answer and for docs. Empty when not listed.
    fn operations(&self) -> Vec<&str> {
        Vec::new()
    }

    /// An identity of the exact code this instance runs (a process plugin's executable hash),
    /// when the plugin can run that same code again: a crash restart or a probation revert
    /// then asks its factory for it through [`PluginBuild::code`]. Shown in status.
    fn code(&self) -> Option<&str> {
        None
    }

    /// The file this instance's code comes from, when its config asks the runtime to follow
    /// it: a change of the file's content (its SHA-256 differs from [`code`](Plugin::code))
    /// reloads the instance, state handed over.
    fn watched_file(&self) -> Option<&Path> {
        None
    }

    /// Called once after [`start`](Plugin::start). A plugin that returns [`DirectCalls`]
    /// answers calls through them, concurrently and outside its actor (a process plugin
    /// pipelines them to its child); the actor keeps start, state, stop and crash handling.
    fn direct_calls(&mut self) -> Option<DirectCalls> {
        None
    }
}

/// A call answered outside the plugin's actor: `(call, timeout) -> answer`.
pub type DirectCall = Arc<
    dyn Fn(PluginCall, Duration) -> BoxFuture<'static, Result<Value, PluginError>> + Send + Sync,
>;

/// How a plugin answers calls concurrently, outside its actor: see [`Plugin::direct_calls`].
// Read by the runtime's plugin actor only.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub struct DirectCalls {
    pub(crate) call: DirectCall,
    pub(crate) closed: BoxFuture<'static, String>,
    pub(crate) pid: Option<u32>,
}

impl DirectCalls {
    /// Calls go to `call`; when `closed` resolves (with why), the instance has failed and is
    /// restarted under its restart policy, like after a panic.
    pub fn new(
        call: DirectCall,
        closed: impl std::future::Future<Output = String> + Send + 'static,
    ) -> Self {
        Self {
            call,
            closed: Box::pin(closed),
            pid: None,
        }
    }

    /// The operating-system process that answers, shown in status.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }
}

impl fmt::Debug for DirectCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectCalls")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "runtime")]
/// What a plugin factory gets to build one instance.
#[derive(Debug)]
pub struct PluginBuild<'a> {
    /// The instance's name.
    pub name: &'a str,
    /// The code to run, when a restart or a revert asks for the code an earlier instance
    /// ran (see [`Plugin::code`]); `None`: what is installed now.
    pub code: Option<&'a str>,
    /// The entry's `config:`, with `${VAR}` already expanded.
    pub config: &'a serde_json::Value,
    /// The place of `config` in the document, for errors.
    pub place: &'a str,
}

#[cfg(feature = "runtime")]
/// Builds instances of one plugin kind, with no outside effects. Closures
/// `Fn(&PluginBuild) -> Result<Box<dyn Plugin>, ConfigErrors>` are factories.
pub trait PluginFactory: Send + Sync + 'static {
    /// Builds what `build` describes, or explains with places what is wrong with its
    /// config. No outside effects.
    fn build(&self, build: &PluginBuild<'_>) -> Result<Box<dyn Plugin>, ConfigErrors>;
}

#[cfg(feature = "runtime")]
super::settings::factory_impls!(PluginBuild, PluginFactory, Box<dyn Plugin>);

impl fmt::Debug for dyn Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("kind", &self.kind())
            .field("version", &self.version())
            .finish()
    }
}

/// What a plugin slot keeps of the code its instances ran: the live code and the one before it
/// (a probation revert runs that again), each held by a value whose drop lets it go (for a
/// process plugin, a shared lock on its copy in the code store, which the store's pruning
/// respects). Older code is let go as newer code starts.
#[cfg(feature = "runtime")]
#[derive(Default)]
pub(crate) struct CodeHold {
    kept: std::sync::Mutex<
        std::collections::VecDeque<(String, Box<dyn std::any::Any + Send + Sync>)>,
    >,
}

#[cfg(feature = "runtime")]
impl CodeHold {
    /// How many codes a slot keeps: the live one and the previous one.
    const KEPT: usize = 2;

    /// Keeps `held` for the code `hash`, which now runs: the code before it stays kept, any
    /// older is let go.
    pub(crate) fn keep(&self, hash: &str, held: Box<dyn std::any::Any + Send + Sync>) {
        // Plain data replaced whole: a poisoned lock still holds it.
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(kept, _)| kept != hash);
        kept.push_back((hash.to_owned(), held));
        while kept.len() > Self::KEPT {
            kept.pop_front();
        }
    }
}

#[cfg(feature = "runtime")]
impl fmt::Debug for CodeHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_list()
            .entries(kept.iter().map(|(hash, _)| hash))
            .finish()
    }
}
