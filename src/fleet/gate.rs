//! The cluster port's gate: what a connection may cost before it has proved the cookie.
//!
//! ractor_cluster reads each frame (a big-endian `u64` length, then that many bytes) into
//! memory before it looks at it, with one size limit for every phase of a connection, and
//! keeps a connection that never authenticates for as long as it stays open. So every
//! connection accepted on the cluster port passes through a [`GatedReader`] first, which
//! follows the frame boundaries in the bytes it forwards and, until the node server reports
//! the session authenticated:
//!
//! - refuses a frame announced larger than [`PRE_AUTH_MAX_FRAME`] (the handshake's frames
//!   are a few hundred bytes), before any of it is buffered;
//! - closes the connection at [`HANDSHAKE_DEADLINE`];
//! - counts it, and the accept loop turns away connections past [`MAX_UNAUTHENTICATED`].
//!
//! After authentication the reader only forwards: the peer knows the cookie.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use dashmap::DashMap;
use ractor_cluster::NodeEventSubscription;
use ractor_cluster::node::NodeServerSessionInformation;
use tokio::io::{AsyncRead, ReadBuf};

/// The largest frame a connection may announce before it authenticates.
pub(super) const PRE_AUTH_MAX_FRAME: u64 = 64 * 1024;

/// How long a connection has to complete the cookie handshake.
pub(super) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// How many connections may be in the handshake at once.
pub(super) const MAX_UNAUTHENTICATED: usize = 64;

/// The connections in their handshake, by the peer label the node server reports them under.
#[derive(Default)]
pub(super) struct Gate {
    pending: DashMap<String, Arc<Handshake>>,
    unauthenticated: AtomicUsize,
}

/// One connection's handshake.
#[derive(Default)]
struct Handshake {
    authenticated: AtomicBool,
    /// Whether it still counts against [`MAX_UNAUTHENTICATED`].
    counted: AtomicBool,
}

impl Gate {
    /// A reader for a connection from `peer` (a label unique among open connections: its
    /// address), or `None` when too many connections are in their handshake already.
    pub(super) fn admit<R>(self: &Arc<Self>, peer: String, inner: R) -> Option<GatedReader<R>> {
        let admitted = self
            .unauthenticated
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_UNAUTHENTICATED).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return None;
        }
        let handshake = Arc::new(Handshake {
            authenticated: AtomicBool::new(false),
            counted: AtomicBool::new(true),
        });
        self.pending.insert(peer.clone(), handshake.clone());
        Some(GatedReader {
            inner,
            gate: self.clone(),
            peer,
            handshake,
            deadline: Box::pin(tokio::time::sleep(HANDSHAKE_DEADLINE)),
            frames: Frames::default(),
        })
    }

    /// The handshake of `peer` is done (or the connection is gone): it stops counting.
    fn release(&self, peer: &str, handshake: &Handshake) {
        if handshake.counted.swap(false, Ordering::AcqRel) {
            self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
        }
        self.pending
            .remove_if(peer, |_, h| std::ptr::eq(Arc::as_ptr(h), handshake));
    }

    fn authenticated(&self, peer: &str) {
        let Some(handshake) = self.pending.get(peer).map(|h| h.clone()) else {
            return;
        };
        handshake.authenticated.store(true, Ordering::Release);
        self.release(peer, &handshake);
    }

    /// How many connections are in their handshake now.
    #[cfg(test)]
    fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::Acquire)
    }
}

/// Tells the gate when the node server has authenticated a session.
pub(super) struct Authentications(pub(super) Arc<Gate>);

impl NodeEventSubscription for Authentications {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, _: NodeServerSessionInformation) {}

    fn node_session_authenticated(&self, session: NodeServerSessionInformation) {
        self.0.authenticated(&session.peer_addr);
    }
}

/// An accepted connection for the node server: the gated read half, the write half, and the
/// labels the node server reports its session under.
pub(super) struct GatedStream {
    pub(super) peer: String,
    pub(super) local: String,
    pub(super) reader: GatedReader<tokio::net::tcp::OwnedReadHalf>,
    pub(super) writer: tokio::net::tcp::OwnedWriteHalf,
}

impl ractor_cluster::ClusterBidiStream for GatedStream {
    fn split(self: Box<Self>) -> (ractor_cluster::BoxRead, ractor_cluster::BoxWrite) {
        (Box::new(self.reader), Box::new(self.writer))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.clone())
    }

    fn local_label(&self) -> Option<String> {
        Some(self.local.clone())
    }
}

/// Where the byte stream is in its frames.
#[derive(Default)]
struct Frames {
    header: [u8; 8],
    header_len: usize,
    payload_left: u64,
}

impl Frames {
    /// Follows `bytes`; fails on a frame announced larger than `limit`.
    fn follow(&mut self, mut bytes: &[u8], limit: Option<u64>) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (8 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 8 {
                self.header_len = 0;
                let length = u64::from_be_bytes(self.header);
                if let Some(limit) = limit
                    && length > limit
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "an unauthenticated cluster connection announced a {length}-byte frame; at most {limit} bytes are read before the cookie is proved"
                        ),
                    ));
                }
                self.payload_left = length;
            }
        }
        Ok(())
    }
}

/// A connection's read half behind the gate.
pub(super) struct GatedReader<R> {
    inner: R,
    gate: Arc<Gate>,
    peer: String,
    handshake: Arc<Handshake>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    frames: Frames,
}

impl<R: AsyncRead + Unpin> AsyncRead for GatedReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let authenticated = this.handshake.authenticated.load(Ordering::Acquire);
        if !authenticated && this.deadline.as_mut().poll(cx).is_ready() {
            this.gate.release(&this.peer, &this.handshake);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the cluster connection from {} did not prove the cookie within {HANDSHAKE_DEADLINE:?}",
                    this.peer
                ),
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if authenticated {
            return Poll::Ready(Ok(()));
        }
        let result = this
            .frames
            .follow(&buf.filled()[before..], Some(PRE_AUTH_MAX_FRAME));
        if result.is_err() {
            this.gate.release(&this.peer, &this.handshake);
        }
        Poll::Ready(result)
    }
}

impl<R> Drop for GatedReader<R> {
    fn drop(&mut self) {
        self.gate.release(&self.peer, &self.handshake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(length: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[tokio::test]
    async fn small_frames_pass_and_a_large_announced_frame_is_refused_before_its_bytes() {
        let gate = Arc::new(Gate::default());
        let (mut near, far) = tokio::io::duplex(1 << 20);
        let mut reader = gate.admit("peer".into(), far).unwrap();
        assert_eq!(gate.unauthenticated(), 1);
        near.write_all(&frame(3, b"abc")).await.unwrap();
        let mut got = vec![0; 11];
        reader.read_exact(&mut got).await.unwrap();
        near.write_all(&(16u64 << 20).to_be_bytes()).await.unwrap();
        let error = reader.read(&mut [0; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(gate.unauthenticated(), 0);
    }

    #[tokio::test]
    async fn the_cap_turns_connections_away_and_authentication_frees_a_place() {
        let gate = Arc::new(Gate::default());
        let readers: Vec<_> = (0..MAX_UNAUTHENTICATED)
            .map(|i| gate.admit(format!("p{i}"), tokio::io::empty()).unwrap())
            .collect();
        assert!(gate.admit("one more".into(), tokio::io::empty()).is_none());
        gate.authenticated("p0");
        assert_eq!(gate.unauthenticated(), MAX_UNAUTHENTICATED - 1);
        let last = gate.admit("one more".into(), tokio::io::empty());
        assert!(last.is_some());
        drop(readers);
        drop(last);
        assert_eq!(gate.unauthenticated(), 0);
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_at_the_deadline_unless_authenticated() {
        let gate = Arc::new(Gate::default());
        let (_near, far) = tokio::io::duplex(64);
        let mut idle = gate.admit("idle".into(), far).unwrap();
        let error = idle.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        let (mut near, far) = tokio::io::duplex(1 << 20);
        let mut proven = gate.admit("proven".into(), far).unwrap();
        gate.authenticated("proven");
        // Past the deadline, a proven connection reads frames of any size.
        tokio::time::sleep(HANDSHAKE_DEADLINE + Duration::from_millis(100)).await;
        let writing = tokio::spawn(async move {
            near.write_all(&frame(1 << 19, &[7; 1 << 19]))
                .await
                .unwrap();
            near
        });
        let mut got = vec![0; 8 + (1 << 19)];
        proven.read_exact(&mut got).await.unwrap();
        drop(writing.await.unwrap());
    }
}
