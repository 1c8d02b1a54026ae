//! The built-in `process` plugin kind: a plugin that is an executable speaking the line
//! protocol of docs/PLUGIN_PROTOCOL.md over its stdin and stdout.
//!
//! A process plugin is an ordinary [`Plugin`] to the rest of the runtime: its instance has an
//! actor, a restart policy, a swap Supervisor and a status like any other. What differs is
//! where the work happens:
//!
//! - **build** runs nothing: it hashes the executable (reading it is all it does) and takes the
//!   step types the plugin contributes from its config's `stepTypes`, or from the handshake of
//!   an earlier start of the same code ([`manifest`]);
//! - **start** copies the executable into the [code store](store) under its hash (the first
//!   time), verifies the copy, runs exactly the verified bytes ([`sealed`]) and completes the
//!   `initialize` handshake, which must offer the step types the build registered;
//! - **calls** bypass the actor ([`Plugin::direct_calls`]): each is a request line with an id,
//!   any number in flight, bounded by `callTimeout` (past it the process is killed, so the
//!   instance restarts);
//! - **state** moves with `state/export` and `state/import` requests, and the process's
//!   `state/checkpoint` notifications go to the instance's checkpoints;
//! - **stop** sends `shutdown`, then SIGTERM, then SIGKILL, and always reaps the process.

mod build;
mod child;
mod launch;
mod manifest;
mod pipes;
mod sealed;
mod store;

pub(super) use self::build::build;
#[cfg(feature = "cli")]
pub(crate) use self::manifest::allow_describe;
#[cfg(feature = "admin")]
pub(crate) use self::store::refused as code_refused;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use self::child::{PluginProcess, ProcessError};
use self::launch::Launch;
use self::manifest::{TypesFrom, check_manifest};
use self::sealed::SealedExecutable;
use crate::extension::plugin::{DirectCalls, Plugin, PluginCall, PluginContext, PluginError};
use crate::process::protocol::{self, Manifest, method};
use crate::registry::{RegistryError, Types};

/// The plugin kind's name.
pub(super) const KIND: &str = "process";

/// How long `shutdown` may take before SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A process plugin's settings, checked.
#[derive(Debug)]
struct ProcessSettings {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    call_timeout: Duration,
    max_line_bytes: usize,
    settings: Value,
}

/// One instance of a process plugin.
pub(super) struct ProcessPlugin {
    name: String,
    settings: Arc<ProcessSettings>,
    /// The executable as the config names it, when it is watched.
    watched: Option<PathBuf>,
    /// Lowercase hex SHA-256 of the code this instance runs.
    hash: String,
    /// The executable the config names, copied into the store at the first start; `None` when
    /// a restart or a revert pins code that must already be stored.
    source: Option<PathBuf>,
    /// `command[0]` as the config gives it: the process's `argv[0]`.
    arg0: String,
    /// The step types the build registered, and where they came from; `None`: none known.
    step_types: Option<(Vec<String>, TypesFrom)>,
    /// `sha256:<first 12 hex digits>` until the handshake tells the version.
    version: String,
    manifest: Option<Manifest>,
    process: Option<Arc<PluginProcess>>,
}

impl ProcessPlugin {
    /// How to run `executable` as the instance `name`.
    fn launch_as<'a>(
        &'a self,
        executable: &'a Path,
        inherit: Option<std::os::fd::RawFd>,
        name: &'a str,
    ) -> Launch<'a> {
        let settings = &self.settings;
        Launch {
            executable,
            arg0: &self.arg0,
            inherit,
            args: &settings.args,
            env: &settings.env,
            cwd: settings.cwd.as_deref(),
            name,
            max_line_bytes: settings.max_line_bytes,
        }
    }

    /// `initialize`'s params for the instance `name`.
    fn initialize_params(&self, name: &str) -> Value {
        let params = protocol::InitializeParams {
            protocol_version: protocol::PROTOCOL_VERSION,
            name: name.to_owned(),
            config: self.settings.settings.clone(),
            max_line_bytes: self.settings.max_line_bytes,
            max_checkpoint_bytes: crate::extension::plugin::DEFAULT_CHECKPOINT_LIMIT,
        };
        // Plain strings, numbers and a Value always serialize.
        serde_json::to_value(params).unwrap_or_default()
    }

    fn process(&self) -> Result<&Arc<PluginProcess>, PluginError> {
        self.process.as_ref().ok_or_else(|| {
            PluginError::Unavailable(format!("plugin {:?} has no process", self.name))
        })
    }

    /// Verifies the pinned code, runs exactly the bytes it verified, and completes the
    /// handshake.
    async fn launch(&mut self, context: &PluginContext) -> Result<(), PluginError> {
        let (hash, source) = (self.hash.clone(), self.source.clone());
        let verified =
            tokio::task::spawn_blocking(move || store::verified(&hash, source.as_deref()))
                .await
                .map_err(|e| {
                    PluginError::Failed(format!("verifying the plugin's code failed: {e}"))
                })?;
        let launched = match verified {
            Ok((bytes, copy)) => self.launch_verified(context, bytes).await.map(|()| copy),
            Err(error) => Err(PluginError::Failed(error)),
        };
        // Code replaced twice over, or this start's copy when it failed, is let go.
        let kept = launched.map(|copy| {
            if let Some(hold) = &context.code {
                hold.keep(&self.hash, Box::new(copy));
            }
        });
        tokio::task::spawn_blocking(store::prune);
        kept
    }

    /// Runs exactly `bytes`, the verified code, and completes the handshake.
    async fn launch_verified(
        &mut self,
        context: &PluginContext,
        bytes: Vec<u8>,
    ) -> Result<(), PluginError> {
        let sealed = SealedExecutable::new(&bytes);
        drop(bytes);
        let stored;
        let launch = match &sealed {
            Some(sealed) => {
                stored = sealed.path();
                self.launch_as(&stored, Some(sealed.descriptor()), &context.name)
            }
            None => {
                // Verified just now in a folder only this user can write.
                stored = store::folder()
                    .map_err(PluginError::Failed)?
                    .join(&self.hash);
                self.launch_as(&stored, None, &context.name)
            }
        };
        let process = PluginProcess::spawn(&launch, context.clone())
            .await
            .map_err(|e| {
                PluginError::Failed(format!(
                    "cannot start {} (code sha256:{}): {e}",
                    self.arg0, self.hash
                ))
            })?;
        drop(sealed);
        let params = self.initialize_params(&context.name);
        let answer = process
            .request(method::INITIALIZE, &params, self.settings.call_timeout)
            .await
            .map_err(|e| PluginError::Failed(format!("the initialize handshake failed: {e}")))?;
        let manifest = check_manifest(answer).map_err(PluginError::Failed)?;
        self.check_offered(&manifest).map_err(PluginError::Failed)?;
        tracing::info!(plugin = %context.name, kind = %manifest.kind, version = %manifest.version, pid = process.pid(), code = %self.hash, "plugin process ready");
        manifest::remember(self, &manifest);
        self.version = manifest.version.clone();
        self.manifest = Some(manifest);
        self.process = Some(Arc::new(process));
        Ok(())
    }

    /// Checks that the handshake offers exactly the step types the build registered.
    fn check_offered(&self, manifest: &Manifest) -> Result<(), String> {
        let Some((expected, from)) = &self.step_types else {
            return Ok(());
        };
        let offered = manifest::offered(manifest);
        if &offered == expected {
            return Ok(());
        }
        Err(format!(
            "plugin {:?} offers the step types {:?} in its initialize answer, but {} {:?}; make the declaration match what the plugin offers",
            self.name,
            offered,
            from.phrase(),
            expected
        ))
    }
}

/// A call's failure as its caller sees it.
fn call_error(name: &str, op: &str, error: ProcessError) -> PluginError {
    match error {
        ProcessError::Answered(error) => PluginError::Failed(error.message),
        ProcessError::TimedOut(timeout) => PluginError::Unavailable(format!(
            "plugin {name:?} did not answer {op:?} within {timeout:?}; its process was killed and is restarted"
        )),
        ProcessError::Closed(reason) => {
            PluginError::Unavailable(format!("plugin {name:?} cannot answer {op:?}: {reason}"))
        }
    }
}

/// Sends one call to `process`, bounded by the shorter of the caller's and the plugin's
/// timeout.
async fn call(
    process: &PluginProcess,
    name: &str,
    call: PluginCall,
    timeout: Duration,
) -> Result<Value, PluginError> {
    let params = json!({ "op": call.op, "args": call.args });
    process
        .request(method::CALL, &params, timeout)
        .await
        .map_err(|error| call_error(name, &call.op, error))
}

impl Plugin for ProcessPlugin {
    fn kind(&self) -> &str {
        KIND
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn register(&self, types: &mut Types) -> Result<(), RegistryError> {
        manifest::register(self, types)
    }

    fn types_known(&self) -> bool {
        self.step_types.is_some()
    }

    fn start(&mut self, context: &PluginContext) -> BoxFuture<'_, Result<(), PluginError>> {
        let context = context.clone();
        Box::pin(async move { self.launch(&context).await })
    }

    fn handle(&mut self, request: PluginCall) -> BoxFuture<'_, Result<Value, PluginError>> {
        Box::pin(async move {
            let process = self.process()?;
            call(process, &self.name, request, self.settings.call_timeout).await
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async move {
            let Some(process) = self.process.take() else {
                return Ok(());
            };
            let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
            process.shutdown(deadline).await.map_err(|why| {
                PluginError::Failed(format!(
                    "plugin {:?} did not stop cleanly: {why}",
                    self.name
                ))
            })
        })
    }

    fn export_state(&mut self) -> BoxFuture<'_, Result<Option<Value>, PluginError>> {
        Box::pin(async move {
            let process = self.process()?;
            match process
                .request(method::EXPORT, &Value::Null, self.settings.call_timeout)
                .await
            {
                Ok(Value::Null) => Ok(None),
                Ok(state) => Ok(Some(state)),
                Err(error) => Err(PluginError::Failed(format!("state/export failed: {error}"))),
            }
        })
    }

    fn migrate(&mut self, previous: Value) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async move {
            let process = self.process()?;
            let params = json!({ "state": previous });
            process
                .request(method::IMPORT, &params, self.settings.call_timeout)
                .await
                .map(drop)
                .map_err(|error| PluginError::Failed(format!("state/import failed: {error}")))
        })
    }

    fn operations(&self) -> Vec<&str> {
        self.manifest
            .iter()
            .flat_map(|m| m.ops.iter().map(String::as_str))
            .collect()
    }

    fn code(&self) -> Option<&str> {
        Some(&self.hash)
    }

    fn watched_file(&self) -> Option<&Path> {
        self.watched.as_deref()
    }

    fn direct_calls(&mut self) -> Option<DirectCalls> {
        let process = self.process.clone()?;
        let closed = process.closed();
        let pid = process.pid();
        let name: Arc<str> = Arc::from(self.name.as_str());
        let limit = self.settings.call_timeout;
        let direct = Arc::new(move |request: PluginCall, timeout: Duration| {
            let (process, name) = (process.clone(), name.clone());
            let answer: BoxFuture<'static, _> =
                Box::pin(async move { call(&process, &name, request, timeout.min(limit)).await });
            answer
        });
        Some(DirectCalls::new(direct, closed).with_pid(pid))
    }
}
