//! Serving one connection, with the watchdog that enforces its head and idle timeouts.
//!
//! The connection's [`Clock`](super::clock::Clock) says which phase it is in and since when;
//! the watchdog, polled with the connection itself, closes it when its head or idle phase
//! outlives its timeout. A request being answered has its body deadline instead
//! ([`RequestBody`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::clock::{BUSY, HEAD, IDLE, WAITING};
use super::gate::{Admission, Admitted};
use super::request_body::{Request, RequestBody};
use super::stream::ClockedStream;

/// Serves one connection until it ends, times out or is asked to close. A request that asks to
/// upgrade the connection (a WebSocket) may be answered `101` by its handler, which then owns
/// the upgraded connection (`hyper::upgrade::on`): serving it ends here, the connection lives
/// on in the handler's task.
pub(super) async fn serve_connection<H, Fut, B>(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    admitted: Arc<Admitted>,
    handler: H,
    mut closing: watch::Receiver<Option<Instant>>,
) where
    H: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = admitted.gate.limits();
    let body_limits = *limits;
    let in_service = admitted.clone();
    let on_reserve = admitted.tracked.admission == Admission::Probe;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let clock = &in_service.tracked.clock;
        let gate = &in_service.gate;
        // From head, or from idle when a pipelined request was already buffered.
        let _ = clock.shift(WAITING, BUSY, gate.now_ms());
        let request = request.map(|body| RequestBody::new(body, &body_limits, peer));
        let response = match super::early::answer(&request, on_reserve, gate.probes) {
            Some(early) => {
                // Read and dropped in the background, so that the client sees the answer.
                super::body::linger(request.into_body());
                Either::Right(std::future::ready(early.map(Either::Right)))
            }
            None => Either::Left(handler(request)),
        };
        let done = in_service.clone();
        async move {
            let mut response = match response {
                Either::Left(handled) => handled.await.map(Either::Left),
                Either::Right(early) => early.await,
            };
            // Handing over to a new process: this connection closes after this response,
            // between responses, where a client expects a close.
            if super::handoff::draining() {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            done.tracked.clock.shift(&[BUSY], IDLE, done.gate.now_ms());
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(ClockedStream {
        stream,
        admitted: admitted.clone(),
    });
    // Our clock enforces the head and idle timeouts; hyper's header timeout would also count
    // a kept-alive connection's idle time against the head.
    // A connection on the probe reserve answers one request and closes.
    let connection = http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(!on_reserve)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let clock = &admitted.tracked.clock;
    let origin = admitted.gate.origin;
    // When the current phase times out: head and idle have a deadline; a request being
    // answered has its body and pipeline limits instead, and an evicted connection is about
    // to be aborted.
    let deadline_of = |(phase, since): (u64, u64)| {
        let timeout = match phase {
            HEAD => limits.header_read_timeout,
            IDLE => limits.idle_timeout,
            _ => return None,
        };
        Some(origin + Duration::from_millis(since) + timeout)
    };
    // How often a connection without a deadline is looked at again.
    let recheck = limits.header_read_timeout.max(Duration::from_secs(1));
    let mut watched = clock.read();
    let timer =
        tokio::time::sleep_until(deadline_of(watched).unwrap_or_else(|| Instant::now() + recheck));
    tokio::pin!(timer);
    let mut closing_requested = false;
    loop {
        // The connection, and after each of its steps the clock: a phase whose deadline is
        // earlier than the timer's moves the timer (a later one waits for the timer to fire
        // and look again, which spares a timer reset on almost every request).
        let watchdog = std::future::poll_fn(|cx| {
            if connection.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            let now = clock.read();
            if now != watched {
                watched = now;
                if let Some(deadline) = deadline_of(now).filter(|d| *d < timer.deadline()) {
                    timer.as_mut().reset(deadline);
                }
            }
            while timer.as_mut().poll(cx).is_ready() {
                let current = clock.read();
                match deadline_of(current) {
                    Some(deadline) if deadline <= Instant::now() => {
                        return Poll::Ready(Some(current.0));
                    }
                    next => timer
                        .as_mut()
                        .reset(next.unwrap_or_else(|| Instant::now() + recheck)),
                }
            }
            Poll::Pending
        });
        tokio::select! {
            biased;
            ended = watchdog => {
                let Some(phase) = ended else { return };
                let counters = &admitted.gate.counters;
                let (counter, name) = if phase == HEAD {
                    (&counters.header_timeouts, "header")
                } else {
                    (&counters.idle_timeouts, "idle")
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listener = %admitted.gate.label, timeout = name, "connection timed out");
                return;
            }
            _ = closing.wait_for(Option::is_some), if !closing_requested => {
                closing_requested = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
