//! Binary upgrade without dropping a connection: `swapvisor upgrade`, or SIGUSR2.
//!
//! The old process starts the new executable with the same arguments and a private Unix
//! socket to talk over ([`wire`]). The new process ([`successor`]) pauses every accept loop
//! before it has a socket, takes the old one's listening sockets (`SCM_RIGHTS`: the very same
//! sockets, so the kernel's backlog is shared and no connection is refused) and its live
//! config, and builds and starts that config on them. Only when it reports started does the
//! old process stop accepting and drain: each open connection is answered once more, with
//! `Connection: close`, so a client sees its connection close between responses and never a
//! reset. The old process then exports every plugin instance's state, the new one imports it
//! and starts accepting, and the old one exits.
//!
//! If the new process fails to start, exits, or misses a deadline, it is stopped and the old
//! process serves on (accepting again if it had begun to drain): the rollback promise, one
//! level up. Every attempt ends in one [`UpgradeReport`], logged with both pids and shown by
//! the admin API.

mod successor;
mod wire;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::time::Instant;

pub(super) use self::successor::Successor;
use self::wire::{Channel, MAX_SOCKETS, Message, exited, peer_pid};
use crate::Runtime;
use crate::net::handoff::{self, Accepting};

/// Where the new process finds the hand-off socket.
const SOCKET_VAR: &str = "SWAPVISOR_UPGRADE_SOCKET";
/// The old process's pid, which the hand-off socket must belong to.
const TRUST_VAR: &str = "SWAPVISOR_UPGRADE_FROM";

/// How one upgrade ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpgradeReport {
    /// `upgraded`, `failed` (the old process serves on) or `busy` (one was already running).
    pub(super) status: &'static str,
    pub(super) old_pid: u32,
    pub(super) new_pid: Option<u32>,
    pub(super) binary: String,
    /// Plugin instances whose state was handed over.
    pub(super) plugins: usize,
    pub(super) error: Option<String>,
    pub(super) duration_ms: u64,
    /// When it ended, RFC 3339.
    pub(super) at: String,
}

/// What the old process needs to hand over.
pub(super) struct Upgrader {
    /// The executable this process started from (the path, not `/proc/self/exe`: a package
    /// update replaces the file there).
    binary: PathBuf,
    args: Vec<OsString>,
    runtime: Arc<Runtime>,
    /// A duplicate of the admin API's listening socket.
    admin: Option<OwnedFd>,
    /// How long the new process may take to start.
    start_timeout: Duration,
    /// How long open connections get to finish during the hand-off.
    drain: Duration,
    busy: tokio::sync::Mutex<()>,
    /// Set once a new process took over: this one then exits.
    pub(super) handed_over: tokio::sync::watch::Sender<bool>,
    started_at: SystemTime,
    upgraded_from: Option<u32>,
    last: Mutex<Option<UpgradeReport>>,
}

impl Upgrader {
    pub(super) fn new(
        runtime: Arc<Runtime>,
        admin: Option<OwnedFd>,
        timeouts: (Duration, Duration),
        upgraded_from: Option<u32>,
    ) -> Self {
        let mut args = std::env::args_os();
        let first = args.next().map(PathBuf::from);
        // The path the process was started by, resolved now, while it still names this build.
        let binary = std::env::current_exe()
            .ok()
            .filter(|p| p.exists())
            .or(first)
            .unwrap_or_else(|| PathBuf::from("swapvisor"));
        Self {
            binary,
            args: args.collect(),
            runtime,
            admin,
            start_timeout: timeouts.0,
            drain: timeouts.1,
            busy: tokio::sync::Mutex::new(()),
            handed_over: tokio::sync::watch::channel(false).0,
            started_at: SystemTime::now(),
            upgraded_from,
            last: Mutex::new(None),
        }
    }

    /// This process, for `GET /api/v1/admin/process`.
    pub(super) fn describe(&self) -> Value {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "binary": self.binary.display().to_string(),
            "startedAt": humantime::format_rfc3339_seconds(self.started_at).to_string(),
            "upgradedFrom": self.upgraded_from,
            "lastUpgrade": last,
        })
    }

    /// Upgrades to `binary` (this process's own executable path when `None`): one report.
    pub(super) async fn upgrade(&self, binary: Option<PathBuf>) -> UpgradeReport {
        let binary = binary.unwrap_or_else(|| self.binary.clone());
        let began = Instant::now();
        let report = |status, new_pid, plugins, error| UpgradeReport {
            status,
            old_pid: std::process::id(),
            new_pid,
            binary: binary.display().to_string(),
            plugins,
            error,
            duration_ms: began.elapsed().as_millis() as u64,
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let Ok(_only) = self.busy.try_lock() else {
            return report(
                "busy",
                None,
                0,
                Some("an upgrade is already running".into()),
            );
        };
        tracing::info!(binary = %binary.display(), old_pid = std::process::id(), "upgrade: starting the new process");
        let report = match self.hand_over(&binary).await {
            Ok((pid, plugins)) => {
                tracing::info!(old_pid = std::process::id(), new_pid = pid, plugins, binary = %binary.display(), "upgrade finished: the new process serves; this one exits");
                report("upgraded", Some(pid), plugins, None)
            }
            Err((pid, error)) => {
                tracing::error!(old_pid = std::process::id(), new_pid = pid, %error, binary = %binary.display(), "upgrade failed: this process serves on");
                report("failed", pid, 0, Some(error))
            }
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        if report.status == "upgraded" {
            self.handed_over.send_replace(true);
        }
        report
    }

    async fn hand_over(&self, binary: &Path) -> Result<(u32, usize), (Option<u32>, String)> {
        check_executable(binary).map_err(|e| (None, e))?;
        let dir =
            private_dir().map_err(|e| (None, format!("cannot make the hand-off socket: {e}")))?;
        let socket = dir.join("handoff.sock");
        let listener = UnixListener::bind(&socket)
            .map_err(|e| (None, format!("cannot bind the hand-off socket: {e}")))?;
        let spawned = tokio::process::Command::new(binary)
            .args(&self.args)
            .env(SOCKET_VAR, &socket)
            .env(TRUST_VAR, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err((None, format!("cannot start {}: {error}", binary.display())));
            }
        };
        let pid = child.id().unwrap_or(0);
        let result = self.converse(&listener, &mut child, pid).await;
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(plugins) => Ok((pid, plugins)),
            Err(error) => {
                stop(&mut child, pid).await;
                // Serve on: accept again if the drain had begun.
                handoff::set_accepting(Accepting::Open);
                Err((Some(pid), error))
            }
        }
    }

    /// The old process's side of the conversation; the number of plugin states handed over.
    async fn converse(
        &self,
        listener: &UnixListener,
        child: &mut tokio::process::Child,
        pid: u32,
    ) -> Result<usize, String> {
        let stream = tokio::select! {
            accepted = tokio::time::timeout(self.start_timeout, listener.accept()) => match accepted {
                Ok(Ok((stream, _))) => stream,
                Ok(Err(error)) => return Err(format!("hand-off socket: {error}")),
                Err(_) => return Err(format!("the new process did not connect within {:?}", self.start_timeout)),
            },
            status = child.wait() => return Err(exited(status)),
        };
        if peer_pid(&stream).map_err(|e| e.to_string())? != pid {
            return Err("a process other than the new one connected to the hand-off socket".into());
        }
        let mut channel = Channel::new(stream, self.start_timeout);
        match channel.recv().await.map_err(|e| e.to_string())? {
            Message::Hello { version, .. } => {
                tracing::info!(new_pid = pid, %version, "upgrade: the new process connected")
            }
            other => return Err(format!("unexpected hand-off message {other:?}")),
        }
        let mut sockets = self
            .runtime
            .listeners()
            .handoff()
            .map_err(|e| format!("cannot duplicate the listening sockets: {e}"))?;
        sockets.extend(
            handoff::untaken_duplicates()
                .map_err(|e| format!("cannot duplicate the inherited sockets: {e}"))?,
        );
        if let Some(admin) = &self.admin {
            let admin = admin
                .try_clone()
                .map_err(|e| format!("cannot duplicate the admin socket: {e}"))?;
            sockets.push((crate::admin::ADMIN_SOCKET.to_owned(), admin));
        }
        if sockets.len() > MAX_SOCKETS {
            return Err(format!(
                "{} listening sockets; an upgrade hands over at most {MAX_SOCKETS}",
                sockets.len()
            ));
        }
        let (names, fds): (Vec<_>, Vec<_>) = sockets.into_iter().unzip();
        channel
            .send_with_fds(&Message::Sockets { names }, &fds)
            .await
            .map_err(|e| e.to_string())?;
        drop(fds);
        expect(&mut channel, child, |m| {
            matches!(m, Message::Received { .. })
        })
        .await?;
        let (generation, config) = self
            .runtime
            .observe()
            .live_config()
            .ok_or("no engine is live to hand over")?;
        let config = config.to_document();
        channel
            .send(&Message::Config { config, generation })
            .await
            .map_err(|e| e.to_string())?;
        expect(&mut channel, child, |m| matches!(m, Message::Started)).await?;
        // The new process serves the config: stop accepting and let open connections finish.
        let deadline = Instant::now() + self.drain;
        handoff::set_accepting(Accepting::Draining(deadline));
        if !handoff::connections_closed(deadline).await {
            tracing::warn!(drain = ?self.drain, "upgrade: connections still open at the drain's deadline were closed");
        }
        let states = self.runtime.export_plugins(self.drain).await;
        let count = states.len();
        channel
            .send(&Message::Plugins { states })
            .await
            .map_err(|e| e.to_string())?;
        channel.set_timeout(Duration::from_secs(30));
        expect(&mut channel, child, |m| matches!(m, Message::Ready { .. })).await?;
        Ok(count)
    }
}

/// Waits for the message `wanted` accepts; the new process exiting, failing or saying
/// something else is the error.
async fn expect(
    channel: &mut Channel,
    child: &mut tokio::process::Child,
    wanted: impl Fn(&Message) -> bool,
) -> Result<(), String> {
    let message = tokio::select! {
        message = channel.recv() => message.map_err(|e| e.to_string())?,
        status = child.wait() => return Err(exited(status)),
    };
    match message {
        message if wanted(&message) => Ok(()),
        Message::Failed { error } => Err(format!("the new process could not start: {error}")),
        other => Err(format!("unexpected hand-off message {other:?}")),
    }
}

/// Stops a new process that will not take over: SIGTERM, then SIGKILL after 5 s, reaped.
async fn stop(child: &mut tokio::process::Child, pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// The executable must be a regular, executable file that only its owner (this user or root)
/// can change: an upgrade runs it with this process's rights.
fn check_executable(path: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| format!("cannot use {} as the new executable: {e}", path.display()))?;
    let mode = metadata.permissions().mode();
    let me = rustix::process::geteuid().as_raw();
    let problem = if !metadata.is_file() {
        Some("is not a regular file".to_owned())
    } else if mode & 0o111 == 0 {
        Some("is not executable".to_owned())
    } else if metadata.uid() != me && metadata.uid() != 0 {
        Some(format!(
            "belongs to user {}, neither this user nor root",
            metadata.uid()
        ))
    } else if mode & 0o022 != 0 {
        Some(format!(
            "is writable by its group or others (mode {:o})",
            mode & 0o777
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("refusing to run {}: it {problem}", path.display())),
        None => Ok(()),
    }
}

/// A fresh folder only this user can enter, for the hand-off socket.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for attempt in 0..16u32 {
        let dir = base.join(format!(
            "swapvisor-upgrade-{}-{}-{attempt}",
            std::process::id(),
            fastrand::u32(..)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::other(
        "no free name for the hand-off folder",
    ))
}
