//! The new process of an upgrade: it takes the old one's sockets and config, starts without
//! accepting, and takes over once the old one has drained and handed over its plugins' state.

use std::time::Duration;

use serde_json::Value;
use tokio::net::UnixStream;

use super::wire::{Channel, Message, WireError, peer_pid};
use super::{SOCKET_VAR, TRUST_VAR};
use crate::net::handoff::{self, Accepting};

/// The new process's side of the hand-off, between receiving the config and taking over.
pub(in crate::cli) struct Successor {
    channel: Channel,
    /// The old process's pid.
    pub(in crate::cli) old_pid: u32,
    /// The config to start: the old process's live one, as written.
    pub(in crate::cli) config: Value,
}

impl Successor {
    /// When this process was started by an upgrade (`SWAPVISOR_UPGRADE_SOCKET`): connects to
    /// the old process, pauses accepting, and takes its sockets and config. `None` otherwise.
    pub(in crate::cli) async fn join() -> Option<Result<Successor, String>> {
        let path = std::env::var_os(SOCKET_VAR)?;
        // Only a process started by an old swapvisor carries its pid here.
        let old_pid: u32 = std::env::var(TRUST_VAR).ok()?.parse().ok()?;
        // Nothing is accepted until the old process has let go.
        handoff::set_accepting(Accepting::Paused);
        Some(
            Self::take_over_from(std::path::PathBuf::from(path), old_pid)
                .await
                .map_err(|e| format!("upgrade hand-off from pid {old_pid}: {e}")),
        )
    }

    async fn take_over_from(path: std::path::PathBuf, old_pid: u32) -> Result<Self, WireError> {
        let stream = UnixStream::connect(&path).await?;
        // The socket must be the old process's own, not one another user put in its place.
        let peer = peer_pid(&stream)?;
        if peer != old_pid {
            return Err(WireError::Unexpected(format!(
                "the hand-off socket belongs to pid {peer}, not to the old process"
            )));
        }
        let mut channel = Channel::new(stream, Duration::from_secs(30));
        channel
            .send(&Message::Hello {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .await?;
        let (message, fds) = channel.recv_with_fds().await?;
        let Message::Sockets { names } = message else {
            return Err(WireError::Unexpected(format!("{message:?}")));
        };
        let mut count = 0;
        for (name, fd) in names.into_iter().zip(fds) {
            match handoff::offer(name.clone(), std::net::TcpListener::from(fd)) {
                Ok(_) => count += 1,
                Err(error) => {
                    tracing::warn!(%name, %error, "a handed-over socket is not a listener; closed")
                }
            }
        }
        channel.send(&Message::Received { count }).await?;
        let message = channel.recv().await?;
        let Message::Config { config, generation } = message else {
            return Err(WireError::Unexpected(format!("{message:?}")));
        };
        tracing::info!(
            old_pid,
            sockets = count,
            generation,
            "upgrade: took the old process's sockets and config"
        );
        Ok(Self {
            channel,
            old_pid,
            config,
        })
    }

    /// Tells the old process that the config did not start (this process then exits).
    pub(in crate::cli) async fn failed(mut self, error: &str) {
        let _ = self
            .channel
            .send(&Message::Failed {
                error: error.to_owned(),
            })
            .await;
    }

    /// Tells the old process that the config started, and waits for it to drain and hand over
    /// its plugins' state: returned (empty when the old process went away first: this one
    /// then serves on without them) with what takes over once they are imported.
    pub(in crate::cli) async fn started(mut self, drain: Duration) -> (Vec<Value>, Takeover) {
        // The old process drains for up to `drain`, then exports every plugin's state.
        self.channel.set_timeout(drain + Duration::from_secs(30));
        let states = match self.channel.send(&Message::Started).await {
            Ok(()) => match self.channel.recv().await {
                Ok(Message::Plugins { states }) => states,
                Ok(other) => {
                    tracing::error!(message = ?other, "upgrade: unexpected message; taking over without plugin state");
                    Vec::new()
                }
                Err(error) => {
                    tracing::error!(%error, old_pid = self.old_pid, "upgrade: the old process did not hand over; taking over without its plugin state");
                    Vec::new()
                }
            },
            Err(error) => {
                tracing::error!(%error, "upgrade: cannot reach the old process; taking over");
                Vec::new()
            }
        };
        (
            states,
            Takeover {
                channel: self.channel,
            },
        )
    }
}

/// The last step of the hand-off: start accepting, and tell the old process to go.
pub(in crate::cli) struct Takeover {
    channel: Channel,
}

impl Takeover {
    /// Starts accepting and tells the old process it may go.
    pub(in crate::cli) async fn go(mut self) {
        handoff::set_accepting(Accepting::Open);
        let _ = self
            .channel
            .send(&Message::Ready {
                pid: std::process::id(),
            })
            .await;
    }
}
