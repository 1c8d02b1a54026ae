//! The signals `swapvisor run` listens for: SIGHUP reloads, SIGINT and SIGTERM stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks for.
pub(super) enum Event {
    Reload,
    Shutdown(&'static str),
}

/// SIGHUP, SIGINT and SIGTERM, listened for from the moment they are installed.
pub(super) struct Signals {
    hangup: Signal,
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub(super) fn install() -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next shutdown signal's name; SIGHUP is ignored (nothing to reload yet).
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
            _ = self.interrupt.recv() => Event::Shutdown("SIGINT"),
            _ = self.terminate.recv() => Event::Shutdown("SIGTERM"),
        }
    }
}
