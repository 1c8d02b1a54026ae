//! What a process plugin offers, known before it runs: its declared `stepTypes`, or its
//! `initialize` answer remembered from a real start of the same code, arguments and settings.
//!
//! A config is checked before anything starts, so a pipeline that uses a step type a process
//! plugin contributes needs the plugin's step types at build, and a build never runs code:
//! `validate` checks configs from pull requests and try-activate checks proposed rollouts, and
//! neither may execute what a config names. The types come from the config's declaration or,
//! without one, from the handshake of an earlier start of the same code (remembered in this
//! process). The start then checks that the handshake offers exactly those types.
//!
//! Only when [`allow_describe`] was called (`swapvisor validate --describe`, an explicit
//! choice) does a build with neither run the executable once to *describe* it: it sends
//! `initialize`, reads the answer and closes stdin (the plugin exits as on `shutdown`).

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::ProcessPlugin;
use crate::config::ConfigErrors;
use crate::extension::template::Template;
use crate::extension::{Step, StepBuild, StepContext, StepError};
use crate::process::protocol::{self, Line, Manifest, method};
use crate::registry::{RegistryError, Types};

/// Where the step types a build registered for a plugin came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TypesFrom {
    /// The config's `stepTypes`.
    Declared,
    /// The handshake of an earlier start of the same code, arguments and settings.
    Remembered,
    /// Running the executable at build, as `validate --describe` asks.
    Described,
}

impl TypesFrom {
    pub(super) fn phrase(self) -> &'static str {
        match self {
            Self::Declared => "its config declares (stepTypes)",
            Self::Remembered => "an earlier start of the same code offered",
            Self::Described => "describing it at build offered",
        }
    }
}

/// Reads `initialize`'s answer, or says what was expected.
pub(super) fn check_manifest(answer: Value) -> Result<Manifest, String> {
    let expected = format!(
        "expected {{\"protocolVersion\": {}, \"kind\", \"version\", \"ops\": [...], \"stepTypes\": [...] (optional)}}",
        protocol::PROTOCOL_VERSION
    );
    let version = answer.get("protocolVersion").and_then(Value::as_u64);
    if let Some(version) = version
        && version != u64::from(protocol::PROTOCOL_VERSION)
    {
        return Err(format!(
            "the plugin speaks protocol version {version}; this runtime speaks version {}",
            protocol::PROTOCOL_VERSION
        ));
    }
    serde_json::from_value(answer.clone())
        .map_err(|e| format!("a malformed initialize answer ({e}): {expected}; got {answer}"))
}

/// By (code hash, arguments, settings): what a handshake answered, or why describing that
/// code failed (so it is not run again until the file changes: a new hash, a new key).
type Known = Mutex<HashMap<String, Result<Manifest, String>>>;

fn known() -> std::sync::MutexGuard<'static, HashMap<String, Result<Manifest, String>>> {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    // Entries replaced whole: a poisoned lock still holds them.
    KNOWN
        .get_or_init(Known::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Whether builds in this process may run executables to learn undeclared step types.
static DESCRIBE: AtomicBool = AtomicBool::new(false);

/// Lets every later build in this process run a process plugin's executable once to learn the
/// step types it neither declares nor offered in an earlier start. `swapvisor validate
/// --describe` calls it; a server never does, so its dry runs stay free of outside effects.
#[cfg(feature = "cli")]
pub(crate) fn allow_describe() {
    DESCRIBE.store(true, Ordering::Relaxed);
}

fn key(plugin: &ProcessPlugin) -> String {
    json!([plugin.hash, plugin.settings.args, plugin.settings.settings]).to_string()
}

/// The step types `manifest` offers, sorted, each once: the form the build registers and the
/// start compares.
pub(super) fn offered(manifest: &Manifest) -> Vec<String> {
    let mut types = manifest.step_types.clone();
    types.sort();
    types.dedup();
    types
}

/// Remembers what `plugin`'s handshake answered.
pub(super) fn remember(plugin: &ProcessPlugin, manifest: &Manifest) {
    known().insert(key(plugin), Ok(manifest.clone()));
}

/// The step types of an undeclared plugin: remembered, or (when allowed) learned by running
/// it once; sorted.
pub(super) fn learned(plugin: &ProcessPlugin) -> Option<(Vec<String>, TypesFrom)> {
    let key = key(plugin);
    match known().get(&key) {
        Some(Ok(manifest)) => return Some((offered(manifest), TypesFrom::Remembered)),
        Some(Err(error)) => {
            tracing::debug!(plugin = %plugin.name, %error, "not describing the plugin again: the same code failed before");
            return None;
        }
        None => {}
    }
    if !DESCRIBE.load(Ordering::Relaxed) {
        return None;
    }
    let source = plugin.source.as_deref()?;
    match crate::engine::off_request_threads(|| describe(plugin, source)) {
        Ok(manifest) => Some((offered(&manifest), TypesFrom::Described)),
        Err(error) => {
            tracing::warn!(plugin = %plugin.name, %error, "cannot learn the plugin's step types");
            known().insert(key, Err(error));
            None
        }
    }
}

/// Runs the plugin's executable once for its `initialize` answer, and reaps it.
fn describe(plugin: &ProcessPlugin, source: &std::path::Path) -> Result<Manifest, String> {
    let settings = &plugin.settings;
    let mut command = plugin.launch_as(source, None, &plugin.name).command();
    command.stderr(Stdio::null());
    let mut child = super::launch::retry_busy(|| command.spawn()).map_err(|e| {
        format!(
            "cannot run {} to learn its step types: {e}",
            source.display()
        )
    })?;
    let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
    let answer = match (stdin, stdout) {
        (Some(mut stdin), Some(stdout)) => {
            let params = plugin.initialize_params(&plugin.name);
            let mut line = protocol::request_line(0, method::INITIALIZE, &params);
            line.push(b'\n');
            let sent = stdin.write_all(&line).and_then(|()| stdin.flush());
            let answer = sent
                .map_err(|e| format!("it closed its stdin ({e})"))
                .and_then(|()| read_answer(stdout, settings.max_line_bytes, settings.call_timeout));
            // End of stdin: the plugin exits as after `shutdown`.
            drop(stdin);
            answer
        }
        _ => Err("it has no pipes".into()),
    };
    finish(&mut child);
    let answer =
        answer.map_err(|why| format!("describing plugin {:?} failed: {why}", plugin.name))?;
    check_manifest(answer)
}

/// Reads the first answer line within `timeout`, on a thread of its own.
fn read_answer(
    stdout: std::process::ChildStdout,
    max_line_bytes: usize,
    timeout: Duration,
) -> Result<Value, String> {
    let (sender, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let read = protocol::read_line_blocking(&mut reader, &mut line, max_line_bytes);
        let _ = sender.send(read.map(|found| (found, line)));
    });
    match answered.recv_timeout(timeout) {
        Ok(Ok((Line::Complete, line))) => match protocol::parse_response(&line)?.result {
            Ok(answer) => Ok(answer),
            Err(error) => Err(format!("it refused initialize: {error}")),
        },
        Ok(Ok((Line::TooLong, _))) => Err(format!(
            "it answered with a line longer than {max_line_bytes} bytes"
        )),
        Ok(Ok((Line::End, _))) | Ok(Err(_)) => Err("it exited without answering initialize".into()),
        Err(_) => Err(format!("no answer to initialize within {timeout:?}")),
    }
}

/// Waits a moment for the describing process to exit, then kills its group; always reaps it.
fn finish(child: &mut std::process::Child) {
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    super::launch::signal_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

/// Registers the step types `plugin` contributes: each is a step that calls it.
pub(super) fn register(plugin: &ProcessPlugin, types: &mut Types) -> Result<(), RegistryError> {
    let Some((step_types, _)) = &plugin.step_types else {
        return Ok(());
    };
    let instance: Arc<str> = Arc::from(plugin.name.as_str());
    for step_type in step_types {
        let instance = instance.clone();
        let op: Arc<str> = Arc::from(step_type.as_str());
        types.register_step(
            step_type,
            move |build: &StepBuild<'_>| -> Result<Box<dyn Step>, ConfigErrors> {
                Ok(Box::new(ProcessStep {
                    plugin: instance.clone(),
                    op: op.clone(),
                    config: build.template("config", build.config)?,
                }))
            },
        )?;
    }
    Ok(())
}

/// A step of a type a process plugin contributes: a `call` of the type with
/// `{config, input}`; its answer is the step's output.
struct ProcessStep {
    plugin: Arc<str>,
    op: Arc<str>,
    config: Template,
}

impl Step for ProcessStep {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let config = match self.config.try_render(&context.scope()) {
            Ok(config) => config,
            Err(exceeded) => return Box::pin(std::future::ready(Err(exceeded.into()))),
        };
        let args = json!({ "config": config, "input": context.request });
        crate::builtin::steps::call_plugin(context, &self.plugin, &self.op, args)
    }
}
