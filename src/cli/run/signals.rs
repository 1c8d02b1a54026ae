//! The signals `swapvisor run` listens for: SIGHUP reloads, SIGUSR2 upgrades the binary,
//! SIGINT and SIGTERM stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks for.
pub(super) enum Event {
    Reload,
    Upgrade,
    Shutdown(&'static str),
}

/// SIGHUP, SIGINT and SIGTERM, listened for from the moment they are installed.
pub(super) struct Signals {
    hangup: Signal,
    user2: Signal,
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub(super) fn install() -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            user2: signal(SignalKind::user_defined2())?,
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next shutdown signal's name; SIGHUP and SIGUSR2 are ignored (nothing to reload or
    /// upgrade yet).
    pub(super) async fn shutdown(&mut self) -> &'static str {
        loop {
            if let Event::Shutdown(name) = self.next().await {
                return name;
            }
        }
    }

    /// The next signal, as what it asks for.
    pub(super) async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hangup.recv() => Event::Reload,
            _ = self.user2.recv() => Event::Upgrade,
            _ = self.interrupt.recv() => Event::Shutdown("SIGINT"),
            _ = self.terminate.recv() => Event::Shutdown("SIGTERM"),
        }
    }
}
