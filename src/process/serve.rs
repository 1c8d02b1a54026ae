//! [`serve`]: any [`Plugin`] as a process plugin executable.
//!
//! The loop reads requests from stdin and answers on stdout, one at a time, in order: the
//! runtime pipelines requests, and the plugin keeps plain state in `&mut self` exactly as it
//! does in-process. The plugin's futures run on a single-threaded tokio runtime. A panic, or
//! [`PluginError::Crash`], answers the call with an error and exits non-zero, so the runtime
//! restarts the plugin under its policy, as it would restart an in-process one;
//! [`PluginError::Exit`] answers null and exits 0.
//!
//! stdout belongs to the protocol: a plugin served this way logs to stderr, which the runtime
//! logs under the instance's name.
//!
//! [`PluginContext::checkpoint`] works here too: the latest state it was given is sent as a
//! `state/checkpoint` notification just before the next answer, so the runtime holds it before
//! the caller hears of the call that changed it. Several checkpoints during one request send
//! only the last.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::protocol::{
    self, CallParams, ImportParams, InitializeParams, Line, PROTOCOL_VERSION, Request, RpcError,
    error_code, method,
};
use crate::extension::plugin::{
    CheckpointError, CheckpointSink, Plugin, PluginCall, PluginContext, PluginError, json_size,
};

/// Serves `plugin` over stdin and stdout until `shutdown` or the end of stdin; returns the exit
/// code for `main`. The entry's `config.settings` are ignored; use [`serve_with`] to build the
/// plugin from them.
///
/// ```no_run
/// # use futures::future::BoxFuture;
/// # use serde_json::Value;
/// # use swapvisor::plugin::{Plugin, PluginCall, PluginError};
/// # struct Echo;
/// # impl Plugin for Echo {
/// #     fn kind(&self) -> &str { "echo" }
/// #     fn version(&self) -> &str { "1.0.0" }
/// #     fn handle(&mut self, call: PluginCall) -> BoxFuture<'_, Result<Value, PluginError>> {
/// #         Box::pin(std::future::ready(Ok(call.args)))
/// #     }
/// # }
/// fn main() -> std::process::ExitCode {
///     swapvisor::plugin::serve(Echo)
/// }
/// ```
pub fn serve(plugin: impl Plugin) -> ExitCode {
    serve_with(|_| Ok(plugin))
}

/// Like [`serve`], building the plugin from `initialize`'s params (its name and the entry's
/// `config.settings`); an `Err` refuses the handshake with that message.
pub fn serve_with<P: Plugin>(
    build: impl FnOnce(&InitializeParams) -> Result<P, String>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "cannot start the plugin's runtime: {error}"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut session = Session {
        runtime,
        build: Some(build),
        plugin: None,
        max_line_bytes: protocol::DEFAULT_MAX_LINE_BYTES,
        checkpoint: Arc::default(),
    };
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(64 * 1024, stdin.lock());
    let mut output = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut line = Vec::new();
    loop {
        // Answers go out in batches: flushed whenever no request is waiting.
        if input.buffer().is_empty() && output.flush().is_err() {
            return ExitCode::FAILURE;
        }
        let read = protocol::read_line_blocking(&mut input, &mut line, session.max_line_bytes);
        let (id, result, next) = match read {
            Ok(Line::Complete) => session.answer(&line),
            Ok(Line::TooLong) => {
                // Skipped to its end, a piece at a time.
                while let Ok(Line::TooLong) =
                    protocol::read_line_blocking(&mut input, &mut line, session.max_line_bytes)
                {
                }
                let too_long = format!(
                    "a request line longer than {} bytes",
                    session.max_line_bytes
                );
                (
                    Value::Null,
                    Err(RpcError::new(error_code::INVALID_REQUEST, too_long)),
                    Next::Serve,
                )
            }
            Ok(Line::End) | Err(_) => {
                session.stop();
                let _ = output.flush();
                return ExitCode::SUCCESS;
            }
        };
        // Before the answer: the runtime then holds the state the answered call left.
        let checkpoint = session.take_checkpoint().map_or(Ok(()), |line| {
            output
                .write_all(&line)
                .and_then(|()| output.write_all(b"\n"))
        });
        let written = checkpoint
            .and_then(|()| output.write_all(&protocol::response_line(id, result)))
            .and_then(|()| output.write_all(b"\n"));
        if written.is_err() {
            return ExitCode::FAILURE;
        }
        if let Next::Exit(code) = next {
            let _ = output.flush();
            return code;
        }
    }
}

/// After an answer: serve on, or exit with a code.
enum Next {
    Serve,
    Exit(ExitCode),
}

type Answer = (Value, Result<Value, RpcError>, Next);

struct Session<P, B> {
    runtime: tokio::runtime::Runtime,
    build: Option<B>,
    plugin: Option<P>,
    max_line_bytes: usize,
    /// The latest state given to [`PluginContext::checkpoint`], not sent yet.
    checkpoint: Arc<Mutex<Option<Value>>>,
}

impl<P: Plugin, B: FnOnce(&InitializeParams) -> Result<P, String>> Session<P, B> {
    fn answer(&mut self, line: &[u8]) -> Answer {
        let request: Request = match serde_json::from_slice(line) {
            Ok(request) => request,
            Err(error) => {
                let code = if serde_json::from_slice::<Value>(line).is_ok() {
                    error_code::INVALID_REQUEST
                } else {
                    error_code::PARSE_ERROR
                };
                return (
                    Value::Null,
                    Err(RpcError::new(code, error.to_string())),
                    Next::Serve,
                );
            }
        };
        let id = request.id.clone();
        let (result, next) = match self.dispatch(request) {
            Ok(answered) => answered,
            Err(error) => (Err(error), Next::Serve),
        };
        (id, result, next)
    }

    fn dispatch(&mut self, request: Request) -> Result<(Result<Value, RpcError>, Next), RpcError> {
        let invalid =
            |e: serde_json::Error| RpcError::new(error_code::INVALID_PARAMS, e.to_string());
        if request.method == method::INITIALIZE {
            let params: InitializeParams =
                serde_json::from_value(request.params).map_err(invalid)?;
            return Ok((self.initialize(params), Next::Serve));
        }
        let Some(plugin) = self.plugin.as_mut() else {
            let message = format!("{:?} before initialize", request.method);
            return Err(RpcError::new(error_code::INVALID_REQUEST, message));
        };
        let runtime = &self.runtime;
        match request.method.as_str() {
            method::CALL => {
                let params: CallParams = serde_json::from_value(request.params).map_err(invalid)?;
                let call = PluginCall::new(params.op, params.args);
                let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    runtime.block_on(plugin.handle(call))
                }));
                Ok(match handled {
                    Ok(Ok(value)) => (Ok(value), Next::Serve),
                    Ok(Err(PluginError::Exit)) => (Ok(Value::Null), Next::Exit(ExitCode::SUCCESS)),
                    Ok(Err(PluginError::Crash(reason))) => {
                        (failed(reason), Next::Exit(ExitCode::FAILURE))
                    }
                    Ok(Err(error)) => (failed(error.to_string()), Next::Serve),
                    Err(_) => (
                        failed("the plugin panicked".into()),
                        Next::Exit(ExitCode::FAILURE),
                    ),
                })
            }
            method::EXPORT => {
                let exported = runtime.block_on(plugin.export_state());
                let result = exported
                    .map(|state| state.unwrap_or(Value::Null))
                    .map_err(|e| RpcError::new(error_code::FAILED, e.to_string()));
                Ok((result, Next::Serve))
            }
            method::IMPORT => {
                let params: ImportParams =
                    serde_json::from_value(request.params).map_err(invalid)?;
                let migrated = runtime.block_on(plugin.migrate(params.state));
                Ok((
                    migrated
                        .map(|()| Value::Null)
                        .map_err(|e| RpcError::new(error_code::FAILED, e.to_string())),
                    Next::Serve,
                ))
            }
            method::SHUTDOWN => {
                let stopped = runtime.block_on(plugin.stop());
                self.plugin = None;
                let result = stopped
                    .map(|()| Value::Null)
                    .map_err(|e| RpcError::new(error_code::FAILED, e.to_string()));
                Ok((result, Next::Exit(ExitCode::SUCCESS)))
            }
            other => Err(RpcError::new(
                error_code::METHOD_NOT_FOUND,
                format!(
                    "unknown method {other:?} (methods: call, state/export, state/import, shutdown)"
                ),
            )),
        }
    }

    fn initialize(&mut self, params: InitializeParams) -> Result<Value, RpcError> {
        if params.protocol_version != PROTOCOL_VERSION {
            return Err(RpcError::new(
                error_code::INVALID_PARAMS,
                format!(
                    "this plugin speaks protocol version {PROTOCOL_VERSION}, not {}",
                    params.protocol_version
                ),
            ));
        }
        let Some(build) = self.build.take() else {
            return Err(RpcError::new(
                error_code::INVALID_REQUEST,
                "initialize was already sent",
            ));
        };
        let mut plugin =
            build(&params).map_err(|e| RpcError::new(error_code::INVALID_PARAMS, e))?;
        let sink = checkpoint_sink(&self.checkpoint, &params);
        let context = PluginContext {
            name: params.name,
            #[cfg(feature = "runtime")]
            metrics: crate::extension::metrics::MetricsHandle::detached(),
            checkpoints: Some(sink),
            #[cfg(feature = "runtime")]
            code: None,
        };
        self.runtime
            .block_on(plugin.start(&context))
            .map_err(|e| RpcError::new(error_code::FAILED, e.to_string()))?;
        self.max_line_bytes = params.max_line_bytes;
        let manifest = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "kind": plugin.kind(),
            "version": plugin.version(),
            "ops": plugin.operations(),
            "stepTypes": [],
        });
        self.plugin = Some(plugin);
        Ok(manifest)
    }

    /// The `state/checkpoint` line of the latest checkpoint not sent yet, if any.
    fn take_checkpoint(&self) -> Option<Vec<u8>> {
        let state = self
            .checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let params = json!({ "state": state });
        Some(protocol::notification_line(method::CHECKPOINT, &params))
    }

    /// The end of stdin: stop as `shutdown` would.
    fn stop(&mut self) {
        if let Some(mut plugin) = self.plugin.take() {
            let _ = self.runtime.block_on(plugin.stop());
        }
    }
}

/// Where the plugin's checkpoints wait for the next answer: refused when the state is over the
/// runtime's bound or its line would be over the line limit (the runtime would take that line
/// for a protocol violation).
fn checkpoint_sink(
    pending: &Arc<Mutex<Option<Value>>>,
    params: &InitializeParams,
) -> CheckpointSink {
    let pending = pending.clone();
    let empty = protocol::notification_line(method::CHECKPOINT, &json!({ "state": null }));
    // The line without its `null`.
    let overhead = empty.len().saturating_sub(4);
    let limit = params
        .max_checkpoint_bytes
        .min(params.max_line_bytes.saturating_sub(overhead));
    Arc::new(move |state: Value| {
        if json_size(&state, limit).is_none() {
            let _ = writeln!(
                std::io::stderr(),
                "a checkpoint larger than {limit} bytes was not sent"
            );
            return Err(CheckpointError::TooLarge { limit });
        }
        *pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
        Ok(())
    })
}

fn failed(message: String) -> Result<Value, RpcError> {
    Err(RpcError::new(error_code::FAILED, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_waits_for_the_next_answer_within_both_bounds() {
        let pending = Arc::new(Mutex::new(None));
        let params = InitializeParams {
            protocol_version: PROTOCOL_VERSION,
            name: "hits".into(),
            config: Value::Null,
            max_line_bytes: 100,
            max_checkpoint_bytes: 1000,
        };
        let sink = checkpoint_sink(&pending, &params);
        sink(json!({"count": 1})).unwrap();
        sink(json!({"count": 2})).unwrap();
        assert_eq!(
            *pending.lock().unwrap(),
            Some(json!({"count": 2})),
            "the latest wins"
        );
        // The line limit is the tighter bound here: the whole notification must fit a line.
        let refused = sink(json!("x".repeat(60))).unwrap_err();
        let CheckpointError::TooLarge { limit } = refused else {
            panic!("{refused:?}")
        };
        let line = protocol::notification_line(method::CHECKPOINT, &json!({ "state": "x" }));
        assert_eq!(limit, 100 - (line.len() - 3));
        assert_eq!(
            *pending.lock().unwrap(),
            Some(json!({"count": 2})),
            "unchanged"
        );
    }
}
