//! The deadline of a request body: whole within a time limit, and at a minimum rate.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::limits::ConnectionLimits;

/// A request as a server's handler receives it: its body has a read deadline.
pub(crate) type Request = hyper::Request<RequestBody>;

/// Request bodies that were not received within their deadline, process-wide.
pub(super) static BODY_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    /// The whole body did not arrive within the read timeout.
    #[error("the request body was not received within its time limit of {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// The body arrived slower than the listener's minimum rate.
    #[error("the request body arrived slower than the minimum rate of {0} bytes per second")]
    TooSlow(u64),
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] hyper::Error),
}

impl RequestBodyError {
    /// Whether `error`, or an error it wraps, is a body read timeout (of either kind).
    pub(crate) fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(error) = current {
            if matches!(
                error.downcast_ref(),
                Some(RequestBodyError::TimedOut(_) | RequestBodyError::TooSlow(_))
            ) {
                return true;
            }
            current = error.source();
        }
        false
    }
}

/// A request body that must arrive whole within a deadline counted from its head, and keep
/// arriving at the listener's minimum rate.
///
/// Its deadline moves with what has arrived: `grace + received / min_rate` after the head, but
/// never past `body_read_timeout`. A client sending at the minimum rate or faster meets only
/// the timeout; one that trickles is cut off as soon as it falls behind, so a flood of bodies
/// sent a byte a second ties up its connections for seconds, not minutes.
pub(crate) struct RequestBody {
    inner: Incoming,
    started: Instant,
    /// The latest the whole body may arrive.
    limit_at: Instant,
    limit: Duration,
    /// Bytes per second; 0 for none.
    min_rate: u64,
    received: u64,
    /// Armed only once the body has to be waited for: most bodies are already buffered.
    timer: Option<Pin<Box<Sleep>>>,
    /// The address of the client that sends it (here rather than in the request's extensions,
    /// whose first entry would cost every request an allocation).
    client: std::net::SocketAddr,
}

impl RequestBody {
    pub(super) fn new(
        inner: Incoming,
        limits: &ConnectionLimits,
        client: std::net::SocketAddr,
    ) -> Self {
        let started = Instant::now();
        Self {
            inner,
            started,
            limit_at: started + limits.body_read_timeout,
            limit: limits.body_read_timeout,
            min_rate: limits.min_body_rate,
            received: 0,
            timer: None,
            client,
        }
    }

    /// The address of the client the request came from.
    pub(crate) fn client(&self) -> std::net::SocketAddr {
        self.client
    }

    /// When the body is late given what has arrived, and why it would be.
    fn deadline(&self) -> (Instant, RequestBodyError) {
        if self.min_rate > 0 {
            let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
            let by_rate = self.started + ConnectionLimits::BODY_RATE_GRACE + earned;
            if by_rate < self.limit_at {
                return (by_rate, RequestBodyError::TooSlow(self.min_rate));
            }
        }
        (self.limit_at, RequestBodyError::TimedOut(self.limit))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(RequestBodyError::from))),
            Poll::Pending => {
                let (deadline, late) = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                // What arrived since the timer was set moved the deadline on.
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        BODY_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                        Poll::Ready(Some(Err(late)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
