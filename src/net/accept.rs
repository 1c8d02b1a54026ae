//! The accept loop every server of the process runs (each `http.server` listener and the
//! admin API): it accepts through the listener's [`Gate`], serves each connection in a task of
//! its own ([`super::connection`]), and at close lets open connections finish until a deadline.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::connection::serve_connection;
use super::gate::{Admitted, Gate};
use super::handoff::Accepting;
use super::request_body::Request;

/// Accepts connections on `listener` through `gate` until `closing` gives a deadline, then
/// lets open connections finish their request until that deadline. While the process's accept
/// switch ([`super::handoff`]) is not open, it accepts nothing; while it drains, connections
/// still idle at its deadline are asked to close.
///
/// `make_handler` is asked for a handler per accepted connection (`None` drops the
/// connection: the server is going away); the handler answers each request.
pub(crate) async fn serve_listener<M, H, Fut, B>(
    listener: Arc<TcpListener>,
    gate: Arc<Gate>,
    closing: watch::Receiver<Option<Instant>>,
    make_handler: M,
) where
    M: Fn() -> Option<H>,
    H: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    let mut asked_to_close = closing;
    // What each connection is told: the listener's close, or the end of a hand-off's drain.
    let (mut tell_connections, _) = watch::channel::<Option<Instant>>(None);
    let mut accepting = super::handoff::accepting();
    let deadline = loop {
        let switch = *accepting.borrow_and_update();
        if switch != Accepting::Open {
            let drain_until = match switch {
                Accepting::Draining(deadline) => Some(deadline),
                _ => None,
            };
            tokio::select! {
                deadline = close_asked(&mut asked_to_close) => break deadline,
                _ = accepting.changed() => {
                    // Open again (a hand-off that failed): new connections get a fresh close.
                    if *accepting.borrow() == Accepting::Open && tell_connections.borrow().is_some() {
                        tell_connections = watch::channel(None).0;
                    }
                }
                // Once: the connections still open at the drain's deadline are asked to close.
                () = sleep_until_some(drain_until.filter(|_| tell_connections.borrow().is_none())) => {
                    tell_connections.send_replace(Some(Instant::now()));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
            continue;
        }
        // Registered before looking, so that a close between the look and the wait is not
        // missed.
        let closed = gate.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if !gate.may_accept() {
            // Every connection is busy with a request: leave new ones in the backlog until
            // one closes (or the cap is raised). The tick covers the process budget, which
            // other listeners' connections free.
            tokio::select! {
                deadline = close_asked(&mut asked_to_close) => break deadline,
                _ = accepting.changed() => {}
                () = closed => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
            continue;
        }
        tokio::select! {
            deadline = close_asked(&mut asked_to_close) => break deadline,
            _ = accepting.changed() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(admission) = gate.make_room() else {
                        gate.counters.refused.fetch_add(1, Ordering::Relaxed);
                        continue; // dropping it closes it
                    };
                    let Some(handler) = make_handler() else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let tracked = gate.admit(admission);
                    let admitted = Arc::new(Admitted { gate: gate.clone(), tracked: tracked.clone() });
                    let closing = tell_connections.subscribe();
                    let task = match super::workers::next() {
                        // Registered again with the connection thread's I/O driver, so that
                        // all of the connection's wake-ups happen there.
                        Some(thread) => match stream.into_std() {
                            Ok(stream) => connections.spawn_on(async move {
                                match TcpStream::from_std(stream) {
                                    Ok(stream) => serve_connection(stream, peer, admitted, handler, closing).await,
                                    Err(e) => tracing::warn!(error = %e, "cannot serve an accepted connection"),
                                }
                            }, thread),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot hand an accepted connection over");
                                continue;
                            }
                        },
                        None => connections.spawn(serve_connection(stream, peer, admitted, handler, closing)),
                    };
                    let _ = tracked.abort.set(task);
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(listener = %gate.label, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    // The port is free from here on (unless it was handed to another process).
    drop(listener);
    tell_connections.send_replace(Some(deadline));
    let drained = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(listener = %gate.label, open = connections.len(), "connections still open at the deadline; aborting them");
        connections.shutdown().await;
    }
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits until a close is asked for and returns its deadline; now when the closing side is
/// gone.
async fn close_asked(closing: &mut watch::Receiver<Option<Instant>>) -> Instant {
    match closing.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or_else(Instant::now),
        Err(_) => Instant::now(),
    }
}
