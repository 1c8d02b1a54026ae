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

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::process::protocol::{self, Line, RpcError, method};

/// How long a process that closed its stdout gets to exit on its own, so that the reason
/// reported is its exit status rather than the closed pipe.
const EXIT_GRACE: Duration = Duration::from_millis(100);

/// How long a process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// The longest stderr line logged whole; longer ones are cut.
const STDERR_LINE: usize = 16 * 1024;

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

/// What to run.
pub(super) struct Launch<'a> {
    pub(super) executable: &'a Path,
    /// What the process sees as its name (`argv[0]`): the command as the config gives it.
    pub(super) arg0: &'a str,
    /// A descriptor the child inherits: the sealed executable it runs (see
    /// [`super::sealed`]).
    pub(super) inherit: Option<std::os::fd::RawFd>,
    pub(super) args: &'a [String],
    pub(super) env: &'a std::collections::BTreeMap<String, String>,
    pub(super) cwd: Option<&'a Path>,
    /// The instance's name: logs, and `SWAPVISOR_PLUGIN`.
    pub(super) name: &'a str,
    pub(super) max_line_bytes: usize,
}

impl Launch<'_> {
    /// The command that runs it, with its pipes, in a process group of its own: signals reach
    /// whatever it started, and a terminal's Ctrl-C reaches the runtime alone, which then
    /// stops its plugins in order.
    pub(super) fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(self.executable);
        command
            .args(self.args)
            .envs(self.env)
            .env("SWAPVISOR_PLUGIN", self.name)
            .env(
                "SWAPVISOR_PROTOCOL_VERSION",
                protocol::PROTOCOL_VERSION.to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        std::os::unix::process::CommandExt::arg0(&mut command, self.arg0);
        if let Some(fd) = self.inherit {
            // SAFETY: the closure runs in the forked child before exec and calls only fcntl,
            // which is async-signal-safe; it clears close-on-exec on a descriptor the parent
            // keeps open for the whole spawn, so the executable's path stays valid in the child.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        if let Some(cwd) = self.cwd {
            command.current_dir(cwd);
        }
        command
    }
}

/// Answers waiting for their calls, and whether the process has closed.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>,
    /// Requests given up on without closing the process: their late answers are dropped.
    abandoned: std::collections::HashSet<u64>,
    closed: Option<String>,
}

/// What the tasks share: the calls waiting, and the close.
struct Shared {
    name: Arc<str>,
    /// Set once the runtime asked it to stop: its exit is then expected, not a failure.
    stopping: std::sync::atomic::AtomicBool,
    waiting: Mutex<Waiting>,
    closed: watch::Sender<Option<String>>,
    /// To the reaper: kill the process group.
    signals: mpsc::UnboundedSender<Signal>,
}

impl Shared {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the process for `reason` (the first reason wins): calls in flight fail, and it
    /// is killed unless it already exited.
    fn close(&self, reason: String, kill: bool) {
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

    fn reason(&self) -> String {
        self.waiting()
            .closed
            .clone()
            .unwrap_or_else(|| "the plugin process closed".into())
    }
}

enum Signal {
    Terminate,
    Kill,
    /// Its stdout closed: give it a moment to exit on its own, then kill it.
    StdoutClosed,
}

enum Outgoing {
    Line(Vec<u8>),
    /// Close stdin: the end of the conversation.
    Close,
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
    /// Spawns the process in a process group of its own, with its pipes served.
    pub(super) async fn spawn(launch: &Launch<'_>) -> std::io::Result<Self> {
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
            signals,
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

/// Runs `spawn`, retrying briefly on ETXTBSY: another thread of this process may be forking
/// while a freshly written executable's descriptor is still open in the child it forked.
pub(super) fn retry_busy<T>(mut spawn: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut attempt = 0;
    loop {
        match spawn() {
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// Spawns the process, killed if its handle is dropped.
fn spawn_child(launch: &Launch<'_>) -> std::io::Result<Child> {
    let mut command = tokio::process::Command::from(launch.command());
    command.kill_on_drop(true);
    retry_busy(|| command.spawn())
}

async fn write(
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

async fn read(stdout: ChildStdout, max_line_bytes: usize, shared: Arc<Shared>) {
    let mut stdout = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        let why = match protocol::read_line(&mut stdout, &mut line, max_line_bytes).await {
            Ok(Line::Complete) => match protocol::parse_response(&line) {
                Ok(response) => {
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

fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    if line.len() > 80 { text + "…" } else { text }
}

async fn log_stderr(stderr: ChildStderr, name: Arc<str>) {
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
async fn reap(
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
    let reason = match status {
        Ok(status) => format!("the plugin process exited ({status})"),
        Err(error) => format!("the plugin process could not be waited for ({error})"),
    };
    shared.close(reason, false);
    exited.send_replace(true);
}

/// Sends `signal` to the process group led by `leader`.
pub(super) fn signal_group(leader: u32, signal: i32) {
    let Ok(leader) = i32::try_from(leader) else {
        return;
    };
    if leader <= 0 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group is the
    // child's own (spawned with process_group(0)); its id cannot be reused while the child,
    // its leader, is not yet reaped, and only its owner reaps it.
    unsafe {
        libc::kill(-leader, signal);
    }
}
