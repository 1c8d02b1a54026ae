//! systemd: readiness notifications (`sd_notify`) and socket activation (`LISTEN_FDS`).
//!
//! Under `Type=notify-reload` (systemd 253+) the service tells systemd `READY=1` once the
//! first engine serves, `RELOADING=1` (with `MONOTONIC_USEC=`) when a reload begins and
//! `READY=1` with `STATUS=<outcome>` when it ends, and `STOPPING=1` when it shuts down; across
//! a binary upgrade the new process names itself with `MAINPID=`. Without `NOTIFY_SOCKET` in
//! the environment every notification is nothing.
//!
//! Sockets systemd opened for the service (`ListenStream=`, passed as `LISTEN_FDS` from fd 3,
//! named by `FileDescriptorName=`) are offered to the listeners: an `http.server` whose
//! address matches one serves on it, and the admin API takes the one named `admin`.

use std::os::fd::{FromRawFd, OwnedFd};

use sd_notify::NotifyState;

/// Sends `states` to systemd, when it listens; a failure is logged, never fatal.
pub(super) fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// `READY=1` with a status line.
pub(super) fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with the monotonic clock, as `Type=notify-reload` requires.
pub(super) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(error) => tracing::warn!(%error, "cannot read the monotonic clock for systemd"),
    }
}

/// `STOPPING=1`.
pub(super) fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `MAINPID=` this process and `READY=1`: the new process of an upgrade takes over.
pub(super) fn took_over(status: &str) {
    notify(&[
        NotifyState::MainPid(std::process::id()),
        NotifyState::Ready,
        NotifyState::Status(status),
    ]);
}

/// Offers the sockets systemd passed (`LISTEN_FDS`, for this pid) to the listeners; the
/// number offered. A descriptor that is not a listening TCP socket is closed and logged.
#[allow(unsafe_code)] // One unsafe block, which says why it is sound (SAFETY:).
pub(super) fn offer_listen_fds() -> usize {
    let fds = match sd_notify::listen_fds_with_names() {
        Ok(fds) => fds,
        Err(error) => {
            tracing::warn!(%error, "cannot read LISTEN_FDS; ignoring socket activation");
            return 0;
        }
    };
    let mut offered = 0;
    for (fd, name) in fds {
        // SAFETY: systemd passed this descriptor to this process (LISTEN_PID is our pid, which
        // `listen_fds_with_names` checked) for us to own; nothing else in the process knows
        // the number, and it is taken exactly once, here.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let listener = std::net::TcpListener::from(owned);
        match crate::net::handoff::offer(name.clone(), listener) {
            Ok(_) => offered += 1,
            Err(error) => {
                tracing::warn!(fd, %name, %error, "LISTEN_FDS: not a listening TCP socket; closed")
            }
        }
    }
    offered
}

/// Reloads `runtime` as systemd expects of `Type=notify-reload`: `RELOADING=1` before,
/// `READY=1` with `STATUS=<outcome>` after (whatever the outcome: the old engine serves on).
pub(super) async fn reload(
    runtime: &crate::Runtime,
    request: crate::Reload,
) -> Result<crate::ReloadRecord, crate::RuntimeError> {
    reloading();
    let answer = runtime.reload(request).await;
    match &answer {
        Ok(record) => ready(&format!(
            "reload {}: generation {}",
            record.outcome.name(),
            record.generation
        )),
        Err(error) => ready(&format!("reload failed: {error}")),
    }
    answer
}
