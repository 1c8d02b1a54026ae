//! The hand-off conversation between an old and a new process: JSON lines over a Unix socket,
//! one of them carrying the listening sockets as `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;

/// The largest message (a config document is limited far below it).
const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// The most sockets one hand-off carries.
pub(super) const MAX_SOCKETS: usize = 64;

/// One step of the hand-off, in the order they are sent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Message {
    /// New → old: here I am.
    Hello {
        /// The new process's pid.
        pid: u32,
        /// Its version.
        version: String,
    },
    /// Old → new: the listening sockets, attached to this message, by name.
    Sockets {
        /// Each socket's name, in the order of the attached descriptors.
        names: Vec<String>,
    },
    /// New → old: the sockets arrived.
    Received {
        /// How many.
        count: usize,
    },
    /// Old → new: the config to build and start (the live one, as written).
    Config {
        /// The config document.
        config: Value,
        /// The old process's generation of it.
        generation: u64,
    },
    /// New → old: the config is built and started; nothing is accepted yet.
    Started,
    /// New → old: it did not start; the new process exits.
    Failed {
        /// Why.
        error: String,
    },
    /// Old → new: stopped accepting and drained; here is each plugin instance's state.
    Plugins {
        /// Each instance's state, as the plugin host exports it.
        states: Vec<Value>,
    },
    /// New → old: serving; the old process may go.
    Ready {
        /// The new process's pid.
        pid: u32,
    },
}

/// The pid of the process at the other end of `stream` (its credentials, from the kernel),
/// which each side checks: the other end must be the very process it expects.
pub(super) fn peer_pid(stream: &UnixStream) -> std::io::Result<u32> {
    let peer = rustix::net::sockopt::socket_peercred(stream)?;
    Ok(peer.pid.as_raw_nonzero().get() as u32)
}

/// The end of the conversation: `status` is how the new process ended before it was ready.
pub(super) fn exited(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => format!("the new process exited ({status}) before it was ready"),
        Err(error) => format!("the new process is gone: {error}"),
    }
}

/// One end of the hand-off socket.
pub(super) struct Channel {
    stream: UnixStream,
    buffer: Vec<u8>,
    /// How long any one message may take to arrive.
    timeout: Duration,
}

/// The conversation went wrong.
#[derive(Debug, thiserror::Error)]
pub(super) enum WireError {
    #[error("the other process closed the hand-off")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("hand-off socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected hand-off message: {0}")]
    Unexpected(String),
}

impl Channel {
    pub(super) fn new(stream: UnixStream, timeout: Duration) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
            timeout,
        }
    }

    /// How long each message may take from now on.
    pub(super) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub(super) async fn send(&mut self, message: &Message) -> Result<(), WireError> {
        let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.stream.write_all(&line).await?;
        Ok(())
    }

    /// Sends `message` with `fds` attached.
    pub(super) async fn send_with_fds(
        &mut self,
        message: &Message,
        fds: &[OwnedFd],
    ) -> Result<(), WireError> {
        let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
        let sent = self
            .stream
            .async_io(Interest::WRITABLE, || {
                let mut control = SendAncillaryBuffer::new(&mut space);
                if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                    return Err(std::io::Error::other("too many sockets for one message"));
                }
                rustix::net::sendmsg(
                    &self.stream,
                    &[IoSlice::new(&line)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )
                .map_err(std::io::Error::from)
            })
            .await?;
        // The descriptors went with the first byte; the rest of the line is plain bytes.
        self.stream.write_all(&line[sent..]).await?;
        Ok(())
    }

    /// The next message.
    pub(super) async fn recv(&mut self) -> Result<Message, WireError> {
        self.recv_inner(None).await
    }

    /// The next message and the descriptors that came with it.
    pub(super) async fn recv_with_fds(&mut self) -> Result<(Message, Vec<OwnedFd>), WireError> {
        let mut fds = Vec::new();
        let message = self.recv_inner(Some(&mut fds)).await?;
        Ok((message, fds))
    }

    async fn recv_inner(
        &mut self,
        mut fds: Option<&mut Vec<OwnedFd>>,
    ) -> Result<Message, WireError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buffer.drain(..=end).collect();
                    return serde_json::from_slice(&line[..end]).map_err(|e| {
                        WireError::Unexpected(format!(
                            "{e}: {}",
                            String::from_utf8_lossy(&line[..end.min(200)])
                        ))
                    });
                }
                if self.buffer.len() > MAX_MESSAGE {
                    return Err(WireError::Unexpected("a message over 128 MiB".into()));
                }
                let read = match fds.as_deref_mut() {
                    Some(fds) => self.read_with_fds(&mut chunk, fds).await?,
                    None => {
                        self.stream.readable().await?;
                        match self.stream.try_read(&mut chunk) {
                            Ok(read) => read,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                };
                if read == 0 {
                    return Err(WireError::Closed);
                }
                self.buffer.extend_from_slice(&chunk[..read]);
            }
        })
        .await
        .map_err(|_| WireError::Timeout(timeout))?
    }

    async fn read_with_fds(
        &self,
        chunk: &mut [u8],
        fds: &mut Vec<OwnedFd>,
    ) -> Result<usize, WireError> {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
        let read = self
            .stream
            .async_io(Interest::READABLE, || {
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let received = rustix::net::recvmsg(
                    &self.stream,
                    &mut [IoSliceMut::new(chunk)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(std::io::Error::from)?;
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = message {
                        fds.extend(received);
                    }
                }
                Ok(received.bytes)
            })
            .await?;
        Ok(read)
    }
}
