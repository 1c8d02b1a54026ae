//! One plugin process: spawned, spoken to over its pipes, and always reaped.
//!
//! Four tasks serve a [`PluginProcess`]: a *writer* that batches request lines onto stdin, a
//! *reader* that matches answer lines on stdout to the calls waiting for them, a *stderr* task
//! that logs what the plugin writes there under its name, and a *reaper* that owns the child,
//! delivers signals to its process group and waits for it, so no zombie is ever left. A call
//! waits on a oneshot keyed by its id, so any number may be in flight.
//!
//! The process is *closed* the first time anything goes wrong (it exits, writes a line that is
//! not an answer, writes a line past the limit, closes its stdout, or a call times out): every
//! call in flight fails with the reason, later calls fail at once, and the process is killed.
//! Its instance sees the close and is restarted under its policy.
//!
//! How it is started and signalled is in [`super::launch`]; the tasks, and what they share,
//! in [`super::pipes`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::launch::{Launch, spawn_child};
use super::pipes::{Outgoing, Shared, Signal, log_stderr, read, reap, write};
use crate::extension::plugin::PluginContext;
use crate::process::protocol::{self, RpcError, method};

/// How long a process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// How a request to the process failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum ProcessError {
    /// The process is gone or broke the protocol; no answer will come.
    #[error("{0}")]
    Closed(String),
    /// No answer within the time allowed (to a `call`: the process was killed).
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The process answered with an error.
    #[error("{0}")]
    Answered(RpcError),
}

/// A running plugin process. Dropping it kills the process (and the reaper reaps it).
pub(super) struct PluginProcess {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    next_id: AtomicU64,
    exited: watch::Receiver<bool>,
    pid: u32,
    max_line_bytes: usize,
}

impl PluginProcess {
    /// Spawns the process in a process group of its own, with its pipes served; its
    /// `state/checkpoint` notifications go to `context`'s checkpoints.
    pub(super) async fn spawn(
        launch: &Launch<'_>,
        context: PluginContext,
    ) -> std::io::Result<Self> {
        let mut child = spawn_child(launch)?;
        let pid = child.id().unwrap_or_default();
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(stdin), Some(stdout), Some(stderr)) => (stdin, stdout, stderr),
                // Piped above; a missing pipe is a broken spawn.
                _ => return Err(std::io::Error::other("the plugin process has no pipes")),
            };
        let (signals, signalled) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            name: Arc::from(launch.name),
            stopping: std::sync::atomic::AtomicBool::new(false),
            waiting: Mutex::default(),
            closed: watch::channel(None).0,
            stdout_read: watch::channel(false).0,
            signals,
            context,
        });
        let (outgoing, lines) = mpsc::unbounded_channel();
        let (exited_tx, exited) = watch::channel(false);
        tokio::spawn(write(stdin, lines, shared.clone()));
        tokio::spawn(read(stdout, launch.max_line_bytes, shared.clone()));
        tokio::spawn(log_stderr(stderr, shared.name.clone()));
        tokio::spawn(reap(child, pid, signalled, shared.clone(), exited_tx));
        tracing::debug!(plugin = %launch.name, pid, executable = %launch.executable.display(), "plugin process spawned");
        Ok(Self {
            shared,
            outgoing,
            next_id: AtomicU64::new(1),
            exited,
            pid,
            max_line_bytes: launch.max_line_bytes,
        })
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `method` with `params` and waits up to `timeout` for the answer. A timeout of a
    /// `call` closes (and kills) the process: its state can no longer be trusted to match what
    /// callers saw. A timeout of anything else leaves it running (a state export that does not
    /// come rolls a reload back, and the process serves on with its state); its late answer
    /// is dropped.
    pub(super) async fn request(
        &self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<Value, ProcessError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = protocol::request_line(id, method, params);
        if line.len() > self.max_line_bytes {
            return Err(ProcessError::Answered(RpcError::new(
                protocol::error_code::INVALID_PARAMS,
                format!(
                    "the {method} request is {} bytes, past the plugin's line limit of {} bytes",
                    line.len(),
                    self.max_line_bytes
                ),
            )));
        }
        let (answer, answered) = oneshot::channel();
        {
            let mut waiting = self.shared.waiting();
            if let Some(reason) = &waiting.closed {
                return Err(ProcessError::Closed(reason.clone()));
            }
            waiting.calls.insert(id, answer);
        }
        if self.outgoing.send(Outgoing::Line(line)).is_err() {
            return Err(ProcessError::Closed(self.shared.reason()));
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(ProcessError::Answered(error)),
            Ok(Err(_)) => Err(ProcessError::Closed(self.shared.reason())),
            Err(_) if method == method::CALL => {
                self.shared.close(
                    format!("it did not answer a {method} request within {timeout:?}"),
                    true,
                );
                Err(ProcessError::TimedOut(timeout))
            }
            Err(_) => {
                let mut waiting = self.shared.waiting();
                if waiting.calls.remove(&id).is_some() {
                    waiting.abandoned.insert(id);
                }
                Err(ProcessError::TimedOut(timeout))
            }
        }
    }

    /// Resolves (with why) once the process can answer nothing more.
    pub(super) fn closed(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut closed = self.shared.closed.subscribe();
        async move {
            match closed.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone().unwrap_or_default(),
                Err(_) => "the plugin process closed".into(),
            }
        }
    }

    /// Stops the process for sure by `deadline`: a `shutdown` request, stdin closed, then
    /// SIGTERM, then SIGKILL. Always waits until it is reaped. Says how it ended when it did
    /// not end on its own.
    pub(super) async fn shutdown(&self, deadline: Instant) -> Result<(), String> {
        let remaining = || deadline.saturating_duration_since(Instant::now());
        self.shared.stopping.store(true, Ordering::Relaxed);
        if self.shared.waiting().closed.is_none() {
            let _ = self
                .request(method::SHUTDOWN, &Value::Null, remaining())
                .await;
        }
        let _ = self.outgoing.send(Outgoing::Close);
        if self.wait_exit(remaining()).await {
            return Ok(());
        }
        let _ = self.shared.signals.send(Signal::Terminate);
        if self.wait_exit(TERM_GRACE).await {
            return Err("it did not exit after shutdown; ended with SIGTERM".into());
        }
        let _ = self.shared.signals.send(Signal::Kill);
        self.wait_exit(Duration::from_secs(5)).await;
        Err("it did not exit after shutdown or SIGTERM; killed".into())
    }

    /// Waits up to `wait` for the process to be reaped.
    async fn wait_exit(&self, wait: Duration) -> bool {
        let mut exited = self.exited.clone();
        matches!(
            tokio::time::timeout(wait, exited.wait_for(|done| *done)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        if !*self.exited.borrow() {
            let _ = self.shared.signals.send(Signal::Kill);
        }
    }
}
