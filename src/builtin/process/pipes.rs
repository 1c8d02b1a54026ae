//! The tasks that serve a plugin process's pipes and its exit (see [`super::child`]), and
//! what they share: the calls waiting for answers, and the close.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};

use super::launch::signal_group;
use crate::extension::plugin::PluginContext;
use crate::process::protocol::{self, CheckpointParams, Incoming, Line, RpcError, method};

/// How long a process that closed its stdout gets to exit on its own, so that the reason
/// reported is its exit status rather than the closed pipe.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest stderr line logged whole; longer ones are cut.
const STDERR_LINE: usize = 16 * 1024;

/// Answers waiting for their calls, and whether the process has closed.
#[derive(Default)]
pub(super) struct Waiting {
    pub(super) calls: HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>,
    /// Requests given up on without closing the process: their late answers are dropped.
    pub(super) abandoned: std::collections::HashSet<u64>,
    pub(super) closed: Option<String>,
}

/// What the tasks share: the calls waiting, and the close.
pub(super) struct Shared {
    pub(super) name: Arc<str>,
    /// Set once the runtime asked it to stop: its exit is then expected, not a failure.
    pub(super) stopping: std::sync::atomic::AtomicBool,
    pub(super) waiting: Mutex<Waiting>,
    pub(super) closed: watch::Sender<Option<String>>,
    /// Set once the reader has read stdout to its end (or stopped reading it).
    pub(super) stdout_read: watch::Sender<bool>,
    /// To the reaper: kill the process group.
    pub(super) signals: mpsc::UnboundedSender<Signal>,
    /// Where its `state/checkpoint` notifications go.
    pub(super) context: PluginContext,
}

impl Shared {
    pub(super) fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the process for `reason` (the first reason wins): calls in flight fail, and it
    /// is killed unless it already exited.
    pub(super) fn close(&self, reason: String, kill: bool) {
        let abandoned = {
            let mut waiting = self.waiting();
            if waiting.closed.is_some() {
                return;
            }
            waiting.closed = Some(reason.clone());
            std::mem::take(&mut waiting.calls)
        };
        // Dropping the senders fails the calls; they read the reason from `closed`.
        drop(abandoned);
        if self.stopping.load(Ordering::Relaxed) {
            tracing::debug!(plugin = %self.name, %reason, "plugin process stopped");
        } else {
            tracing::warn!(plugin = %self.name, %reason, "plugin process closed");
        }
        self.closed.send_replace(Some(reason));
        if kill {
            let _ = self.signals.send(Signal::Kill);
        }
    }

    pub(super) fn reason(&self) -> String {
        self.waiting()
            .closed
            .clone()
            .unwrap_or_else(|| "the plugin process closed".into())
    }
}

/// What the reaper is asked to do to the process.
pub(super) enum Signal {
    Terminate,
    Kill,
    /// Its stdout closed: give it a moment to exit on its own, then kill it.
    StdoutClosed,
}

/// What the writer is given.
pub(super) enum Outgoing {
    Line(Vec<u8>),
    /// Close stdin: the end of the conversation.
    Close,
}

/// The writer: batches queued request lines onto stdin, one flush per batch.
pub(super) async fn write(
    stdin: ChildStdin,
    mut lines: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut stdin = BufWriter::new(stdin);
    while let Some(first) = lines.recv().await {
        let mut next = Some(first);
        // Everything queued goes out in one flush.
        while let Some(outgoing) = next.take() {
            let Outgoing::Line(line) = outgoing else {
                let _ = stdin.flush().await;
                return;
            };
            let written = async {
                stdin.write_all(&line).await?;
                stdin.write_all(b"\n").await
            };
            if let Err(error) = written.await {
                shared.close(format!("its stdin closed ({error})"), true);
                return;
            }
            next = lines.try_recv().ok();
        }
        if let Err(error) = stdin.flush().await {
            shared.close(format!("its stdin closed ({error})"), true);
            return;
        }
    }
}

/// The reader: matches each answer line to the call waiting for it; anything else closes.
pub(super) async fn read(stdout: ChildStdout, max_line_bytes: usize, shared: Arc<Shared>) {
    read_lines(stdout, max_line_bytes, &shared).await;
    shared.stdout_read.send_replace(true);
}

async fn read_lines(stdout: ChildStdout, max_line_bytes: usize, shared: &Shared) {
    let mut stdout = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        let why = match protocol::read_line(&mut stdout, &mut line, max_line_bytes).await {
            Ok(Line::Complete) => match protocol::parse_incoming(&line) {
                Ok(Incoming::Notification { method, params }) => {
                    notified(shared, &method, params);
                    continue;
                }
                Ok(Incoming::Response(response)) => {
                    let waiting = {
                        let mut waiting = shared.waiting();
                        if waiting.abandoned.remove(&response.id) {
                            continue;
                        }
                        waiting.calls.remove(&response.id)
                    };
                    match waiting {
                        Some(answer) => {
                            let _ = answer.send(response.result);
                            continue;
                        }
                        None if shared.waiting().closed.is_some() => return,
                        None => format!(
                            "it answered id {} which no request is waiting for",
                            response.id
                        ),
                    }
                }
                Err(error) => format!(
                    "it wrote a line that is not a response: {error}: {:?}",
                    excerpt(&line)
                ),
            },
            Ok(Line::TooLong) => format!("it wrote a line longer than {max_line_bytes} bytes"),
            Ok(Line::End) | Err(_) => {
                let _ = shared.signals.send(Signal::StdoutClosed);
                return;
            }
        };
        shared.close(format!("protocol violation: {why}"), true);
        return;
    }
}

/// A notification from the plugin: a `state/checkpoint` is kept (or refused, which the
/// checkpoints log and count); anything else is logged and ignored, so that a plugin written
/// for a later protocol still serves here. A notification is never answered.
fn notified(shared: &Shared, method: &str, params: Value) {
    if method != method::CHECKPOINT {
        tracing::debug!(plugin = %shared.name, %method, "ignoring an unknown notification from the plugin");
        return;
    }
    match serde_json::from_value::<CheckpointParams>(params) {
        Ok(params) => {
            // Refusals are logged and counted by the checkpoints themselves.
            let _ = shared.context.checkpoint(params.state);
        }
        Err(error) => {
            tracing::warn!(plugin = %shared.name, %error, "ignoring a state/checkpoint without params.state")
        }
    }
}

fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    if line.len() > 80 { text + "…" } else { text }
}

/// Logs what the plugin writes on stderr, under its name.
pub(super) async fn log_stderr(stderr: ChildStderr, name: Arc<str>) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        match protocol::read_line(&mut stderr, &mut line, STDERR_LINE).await {
            Ok(Line::Complete) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(plugin = %name, "{}", crate::builtin::log_text::log_safe(&text));
            }
            Ok(Line::TooLong) => {
                tracing::info!(plugin = %name, "(a stderr line longer than {STDERR_LINE} bytes, not shown)");
            }
            Ok(Line::End) | Err(_) => return,
        }
    }
}

/// Owns the child: signals its group on request and reaps it, whatever happens.
pub(super) async fn reap(
    mut child: Child,
    pid: u32,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    shared: Arc<Shared>,
    exited: watch::Sender<bool>,
) {
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            signal = signals.recv() => match signal {
                Some(Signal::Terminate) => signal_group(pid, libc::SIGTERM),
                Some(Signal::StdoutClosed) => {
                    if let Ok(status) = tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                        break status;
                    }
                    shared.close("protocol violation: it closed its stdout".into(), false);
                    signal_group(pid, libc::SIGKILL);
                }
                // Killed on request, or its owner is gone: it must not outlive either.
                Some(Signal::Kill) | None => {
                    signal_group(pid, libc::SIGKILL);
                    break child.wait().await;
                }
            },
        }
    };
    // What it wrote before it exited is still in the pipe: answers (and the checkpoints before
    // them) are delivered before the calls still waiting fail. Bounded, since something it
    // started may hold its stdout open.
    let mut read = shared.stdout_read.subscribe();
    let _ = tokio::time::timeout(EXIT_GRACE, read.wait_for(|done| *done)).await;
    let reason = match status {
        Ok(status) => format!("the plugin process exited ({status})"),
        Err(error) => format!("the plugin process could not be waited for ({error})"),
    };
    shared.close(reason, false);
    exited.send_replace(true);
}
