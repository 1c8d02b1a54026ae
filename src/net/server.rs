//! Serving one listening socket so that no client can hold it, or the process, hostage.
//!
//! Every server of the process (each `http.server` listener and the admin API) runs the same
//! accept loop, [`serve_listener`], behind a [`Gate`]:
//!
//! - **A cap.** The gate admits at most [`ConnectionLimits::max_connections`] connections, and
//!   the `http.server` gates together at most the process's connection budget (see
//!   [`super::limits`]). At the cap, the gate closes the connection that has waited longest
//!   without sending a whole request head; when every connection is busy with a request, it
//!   stops accepting and the kernel's backlog holds the rest. Reaching the cap is logged once
//!   (and again only after the listener had room) and counted.
//! - **A clock per connection.** Each connection is in one phase: *head* (from accept, or from
//!   the first byte of a kept-alive connection's next request, until the head is parsed),
//!   *busy* (a request is being answered), or *idle* (after a response, until the next
//!   request's first byte). A watchdog closes a connection whose head or idle phase outlives
//!   its timeout. The request body has its own deadline ([`RequestBody`]).
//!
//! The clock is one atomic word per connection, updated by the connection's own reads and
//! requests: nothing is shared between connections on the request path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, Sleep};

use super::limits::{ConnectionLimits, DescriptorBudget};

/// A request as a server's handler receives it: its body has a read deadline.
pub(crate) type Request = hyper::Request<RequestBody>;

/// The connections of one listener: its cap, its open connections and its counters.
pub(crate) struct Gate {
    /// The listener's address, as `/metrics` labels it.
    label: String,
    /// What serves behind it: `http.server` or `admin`.
    kind: &'static str,
    limits: ArcSwap<ConnectionLimits>,
    /// The process budget the connections also count against; none for the admin API, whose
    /// connections come out of the reserve.
    budget: Option<&'static DescriptorBudget>,
    open: Mutex<HashMap<u64, Arc<Tracked>>>,
    next_id: AtomicU64,
    /// Notified whenever a connection of this gate closes.
    closed: Notify,
    origin: Instant,
    /// Evicted connections whose task has not ended yet: each still holds its descriptor.
    evicting: AtomicUsize,
    at_cap: AtomicBool,
    counters: GateCounters,
    /// Paths answered on the probe reserve (`/healthz`, `/readyz`); empty for no reserve.
    probes: &'static [&'static str],
    /// Connections open on the probe reserve.
    reserve_open: AtomicUsize,
}

/// How many connections a gate with probes admits past its cap, each for one probe request:
/// a liveness probe is answered even while every ordinary connection is busy (a flood of
/// slow request bodies, say), so an orchestrator does not kill a healthy server.
const PROBE_RESERVE: usize = 8;

/// Whether a connection just accepted may be served, and on which allowance.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Within the cap.
    Ordinary,
    /// Past the cap, on the probe reserve: one request, and only a probe is answered.
    Probe,
}

/// Where a connection being accepted goes: see [`Gate::placement`].
enum Placement<'t> {
    Room(Admission),
    /// In place of this connection, which is waiting for a request head.
    Evict(&'t Arc<Tracked>, Admission),
}

/// The connection admitted on `admission` that has waited longest for a request head.
fn oldest_waiting(
    open: &HashMap<u64, Arc<Tracked>>,
    admission: Admission,
) -> Option<&Arc<Tracked>> {
    open.values()
        .filter(|t| t.admission == admission)
        .filter_map(|t| t.clock.waiting_since().map(|since| (since, t)))
        .min_by_key(|(since, _)| *since)
        .map(|(_, t)| t)
}

/// How many evicted connections may still hold their descriptor before the gate stops
/// accepting until they are gone: bounds how far past its cap a flood can push a listener.
const MAX_EVICTING: usize = 8;

#[derive(Default)]
struct GateCounters {
    accepted: AtomicU64,
    at_cap: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    probe_reserve: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

/// Every gate of the process, for `/metrics`.
fn gates() -> &'static Mutex<Vec<Weak<Gate>>> {
    static GATES: OnceLock<Mutex<Vec<Weak<Gate>>>> = OnceLock::new();
    GATES.get_or_init(Mutex::default)
}

/// Request bodies that were not received within their deadline, process-wide.
static BODY_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// A lock over plain data updated in short sections; a panic cannot leave it half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    /// A gate for the listener at `label`, registered for `/metrics`. `budget` is the process
    /// budget its connections count against, if any. `probes` are the paths the gate still
    /// answers past its cap, on a small reserve of its own (none when empty).
    pub(crate) fn new(
        label: String,
        kind: &'static str,
        limits: ConnectionLimits,
        budget: Option<&'static DescriptorBudget>,
        probes: &'static [&'static str],
    ) -> Arc<Self> {
        let gate = Arc::new(Self {
            label,
            kind,
            limits: ArcSwap::from_pointee(limits),
            budget,
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            closed: Notify::new(),
            origin: Instant::now(),
            evicting: AtomicUsize::new(0),
            at_cap: AtomicBool::new(false),
            counters: GateCounters::default(),
            probes,
            reserve_open: AtomicUsize::new(0),
        });
        let mut all = lock(gates());
        all.retain(|g| g.strong_count() > 0);
        all.push(Arc::downgrade(&gate));
        gate
    }

    /// Applies `limits` to connections accepted from now on (and the cap at once).
    pub(crate) fn set_limits(&self, limits: ConnectionLimits) {
        if **self.limits.load() != limits {
            self.limits.store(Arc::new(limits));
            self.closed.notify_waiters();
        }
    }

    fn limits(&self) -> Arc<ConnectionLimits> {
        self.limits.load_full()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX >> 2)
    }

    /// Whether an ordinary connection fits, with `open` connections open in all.
    fn has_room(&self, open: usize) -> bool {
        let ordinary = open.saturating_sub(self.reserve_open.load(Ordering::Relaxed));
        ordinary < self.limits.load().max_connections && self.budget.is_none_or(|b| b.has_room())
    }

    /// Whether the listener is clearly below its cap (and the budget): three quarters or less,
    /// so that reaching the cap is one episode, not one per connection around it.
    fn well_below_cap(&self, open: usize) -> bool {
        let below = |used: usize, cap: usize| used <= cap - cap / 4;
        below(open, self.limits.load().max_connections)
            && self
                .budget
                .is_none_or(|b| below(b.in_use(), b.connections()))
    }

    /// Whether one more connection may be accepted, possibly by closing a waiting one. When
    /// not, the listener is at its cap with every connection busy, which is noted.
    fn may_accept(&self) -> bool {
        let open = lock(&self.open);
        let may = self.placement(&open).is_some();
        if !may {
            self.note_at_cap(open.len());
        }
        may
    }

    /// Where one more connection would go, in this order: into room under the cap; in place
    /// of the ordinary connection that has waited longest for a request head; then, only when
    /// no ordinary connection is waiting (every one is busy with a request), onto the probe
    /// reserve, into its room or in place of its longest-waiting connection. None: nowhere
    /// for now (every connection busy, or enough evictions still under way).
    fn placement<'t>(&self, open: &'t HashMap<u64, Arc<Tracked>>) -> Option<Placement<'t>> {
        if self.has_room(open.len()) {
            return Some(Placement::Room(Admission::Ordinary));
        }
        let may_evict = self.evicting.load(Ordering::Relaxed) < MAX_EVICTING;
        match oldest_waiting(open, Admission::Ordinary) {
            Some(victim) if may_evict => {
                return Some(Placement::Evict(victim, Admission::Ordinary));
            }
            Some(_) => return None,
            None => {}
        }
        if self.probes.is_empty() {
            return None;
        }
        if self.reserve_open.load(Ordering::Relaxed) < PROBE_RESERVE {
            return Some(Placement::Room(Admission::Probe));
        }
        oldest_waiting(open, Admission::Probe)
            .filter(|_| may_evict)
            .map(|victim| Placement::Evict(victim, Admission::Probe))
    }

    /// Makes room for a connection just accepted, and says on which allowance it is served
    /// (see [`Gate::placement`]). None: there is no room, and it is to be closed.
    fn make_room(&self) -> Option<Admission> {
        let open = lock(&self.open);
        if !self.has_room(open.len()) {
            self.note_at_cap(open.len());
        }
        match self.placement(&open)? {
            Placement::Room(admission) => Some(admission),
            // False when it started a request meanwhile.
            Placement::Evict(victim, admission) => {
                if !victim.clock.shift(WAITING, EVICTED, 0) {
                    return None;
                }
                self.evicting.fetch_add(1, Ordering::Relaxed);
                if let Some(abort) = victim.abort.get() {
                    abort.abort();
                }
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                Some(admission)
            }
        }
    }

    /// Logs and counts reaching the cap once per episode.
    fn note_at_cap(&self, open: usize) {
        if !self.at_cap.swap(true, Ordering::Relaxed) {
            self.counters.at_cap.fetch_add(1, Ordering::Relaxed);
            let limits = self.limits.load();
            tracing::warn!(
                listener = %self.label,
                kind = self.kind,
                open,
                max_connections = limits.max_connections,
                budget_in_use = self.budget.map(|b| b.in_use()),
                "listener at its connection cap: closing connections that have not sent a request, then leaving new ones in the backlog"
            );
        }
    }

    fn admit(self: &Arc<Self>, admission: Admission) -> Arc<Tracked> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            id,
            clock: Clock::new(self.now_ms()),
            abort: OnceLock::new(),
            admission,
        });
        lock(&self.open).insert(id, tracked.clone());
        if admission == Admission::Probe {
            self.reserve_open.fetch_add(1, Ordering::Relaxed);
            self.counters.probe_reserve.fetch_add(1, Ordering::Relaxed);
        } else if let Some(budget) = self.budget {
            budget.take();
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        tracked
    }

    fn release(&self, tracked: &Tracked) {
        let open = {
            let mut open = lock(&self.open);
            open.remove(&tracked.id);
            open.len()
        };
        if tracked.clock.read().0 == EVICTED {
            self.evicting.fetch_sub(1, Ordering::Relaxed);
        }
        if tracked.admission == Admission::Probe {
            self.reserve_open.fetch_sub(1, Ordering::Relaxed);
        } else if let Some(budget) = self.budget {
            budget.give_back();
        }
        if self.at_cap.load(Ordering::Relaxed) && self.well_below_cap(open) {
            self.at_cap.store(false, Ordering::Relaxed);
            tracing::info!(listener = %self.label, kind = self.kind, open, "listener below its connection cap again");
        }
        self.closed.notify_waiters();
    }

    #[cfg(feature = "admin")]
    fn write_prometheus(&self, out: &mut String) -> std::fmt::Result {
        use std::fmt::Write as _;
        let labels = format!("listener=\"{}\",kind=\"{}\"", self.label, self.kind);
        let c = &self.counters;
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        writeln!(
            out,
            "swapvisor_listener_connections{{{labels}}} {}",
            lock(&self.open).len()
        )?;
        writeln!(
            out,
            "swapvisor_listener_max_connections{{{labels}}} {}",
            self.limits.load().max_connections
        )?;
        writeln!(
            out,
            "swapvisor_listener_accepted_total{{{labels}}} {}",
            get(&c.accepted)
        )?;
        writeln!(
            out,
            "swapvisor_listener_at_cap_total{{{labels}}} {}",
            get(&c.at_cap)
        )?;
        writeln!(
            out,
            "swapvisor_listener_evicted_total{{{labels}}} {}",
            get(&c.evicted)
        )?;
        writeln!(
            out,
            "swapvisor_listener_refused_total{{{labels}}} {}",
            get(&c.refused)
        )?;
        if !self.probes.is_empty() {
            writeln!(
                out,
                "swapvisor_listener_probe_reserve_total{{{labels}}} {}",
                get(&c.probe_reserve)
            )?;
        }
        writeln!(
            out,
            "swapvisor_listener_timeouts_total{{{labels},timeout=\"header\"}} {}",
            get(&c.header_timeouts)
        )?;
        writeln!(
            out,
            "swapvisor_listener_timeouts_total{{{labels},timeout=\"idle\"}} {}",
            get(&c.idle_timeouts)
        )
    }
}

/// The listener metrics of every server of the process, in the Prometheus text format.
#[cfg(feature = "admin")]
pub(crate) fn write_prometheus(out: &mut String) -> std::fmt::Result {
    use std::fmt::Write as _;
    let live: Vec<Arc<Gate>> = lock(gates()).iter().filter_map(Weak::upgrade).collect();
    let families = [
        (
            "swapvisor_listener_connections",
            "gauge",
            "Connections open on each listener.",
        ),
        (
            "swapvisor_listener_max_connections",
            "gauge",
            "Each listener's connection cap.",
        ),
        (
            "swapvisor_listener_accepted_total",
            "counter",
            "Connections each listener accepted.",
        ),
        (
            "swapvisor_listener_at_cap_total",
            "counter",
            "Times each listener reached its connection cap (or the process budget).",
        ),
        (
            "swapvisor_listener_evicted_total",
            "counter",
            "Connections closed at the cap because they had not sent a whole request head.",
        ),
        (
            "swapvisor_listener_refused_total",
            "counter",
            "Connections closed at once because the listener was at its cap with every connection busy.",
        ),
        (
            "swapvisor_listener_probe_reserve_total",
            "counter",
            "Connections admitted past the cap, every ordinary connection being busy, to answer one health probe.",
        ),
        (
            "swapvisor_listener_timeouts_total",
            "counter",
            "Connections closed by their header read or idle timeout.",
        ),
    ];
    for (name, kind, help) in families {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")?;
    }
    for gate in &live {
        gate.write_prometheus(out)?;
    }
    writeln!(
        out,
        "# HELP swapvisor_request_body_timeouts_total Requests whose body was not received within its read timeout (answered 408)."
    )?;
    writeln!(out, "# TYPE swapvisor_request_body_timeouts_total counter")?;
    writeln!(
        out,
        "swapvisor_request_body_timeouts_total {}",
        BODY_TIMEOUTS.load(Ordering::Relaxed)
    )
}

/// One open connection, as its gate sees it.
struct Tracked {
    id: u64,
    clock: Clock,
    /// Set right after the connection's task is spawned; aborting it closes the socket.
    abort: OnceLock<AbortHandle>,
    admission: Admission,
}

/// A connection's phase and since when (milliseconds since its gate's origin), in one word.
struct Clock(AtomicU64);

const HEAD: u64 = 0;
const BUSY: u64 = 1;
const IDLE: u64 = 2;
const EVICTED: u64 = 3;
/// The phases of a connection waiting for a request head: what the gate may evict.
const WAITING: &[u64] = &[HEAD, IDLE];
const PHASE_BITS: u64 = 2;
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;

impl Clock {
    fn new(now_ms: u64) -> Self {
        Self(AtomicU64::new(pack(HEAD, now_ms)))
    }

    fn read(&self) -> (u64, u64) {
        let word = self.0.load(Ordering::Relaxed);
        (word & PHASE_MASK, word >> PHASE_BITS)
    }

    /// Moves from one of the phases `from` to `to` at `now_ms`; false if the phase was none
    /// of them (an evicted connection stays evicted).
    fn shift(&self, from: &[u64], to: u64, now_ms: u64) -> bool {
        let current = self.0.load(Ordering::Relaxed);
        from.contains(&(current & PHASE_MASK))
            && self
                .0
                .compare_exchange(
                    current,
                    pack(to, now_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Since when the connection has waited for a request head, if it is waiting for one.
    fn waiting_since(&self) -> Option<u64> {
        let (phase, since) = self.read();
        WAITING.contains(&phase).then_some(since)
    }
}

fn pack(phase: u64, since_ms: u64) -> u64 {
    (since_ms << PHASE_BITS) | phase
}

/// Removes a connection from its gate when its task ends, however it ends.
struct Admitted {
    gate: Arc<Gate>,
    tracked: Arc<Tracked>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.release(&self.tracked);
    }
}

/// The stream of one connection, telling its clock when a request's first byte arrives.
struct ClockedStream {
    stream: TcpStream,
    admitted: Arc<Admitted>,
}

impl AsyncRead for ClockedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let admitted = &self.admitted;
            if admitted.tracked.clock.read().0 == IDLE {
                admitted
                    .tracked
                    .clock
                    .shift(&[IDLE], HEAD, admitted.gate.now_ms());
            }
        }
        polled
    }
}

impl AsyncWrite for ClockedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How many connections the kernel queues for a listener until it accepts them: what waits
/// while a listener is at its cap, or while a burst outpaces the accept loop (std's and
/// tokio's 128 drop a burst's SYNs, which clients only retry a second later).
const BACKLOG: i32 = 1024;

/// Binds `address` with a backlog of [`BACKLOG`]. The IPv6 unspecified address (`[::]`, what
/// `:port` means) is bound dual-stack, so IPv4 clients reach it too whatever the system's
/// `bindv6only` default; without IPv6 on the machine it falls back to `0.0.0.0`.
pub(crate) fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen =
        |address: SocketAddr, dual_stack: bool| -> std::io::Result<std::net::TcpListener> {
            let socket = Socket::new(
                Domain::for_address(address),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            if dual_stack {
                socket.set_only_v6(false)?;
            }
            // As std's bind does on Unix: a restart may rebind while old connections sit in
            // TIME_WAIT.
            socket.set_reuse_address(true)?;
            socket.bind(&address.into())?;
            socket.listen(BACKLOG)?;
            let listener: std::net::TcpListener = socket.into();
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
    if address.ip() != std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        return listen(address, false);
    }
    match listen(address, true) {
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
            ) =>
        {
            tracing::info!(%address, "IPv6 is not available; listening on IPv4 only");
            listen(
                SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), address.port()),
                false,
            )
        }
        other => other,
    }
}

/// Accepts connections on `listener` through `gate` until `closing` gives a deadline, then
/// lets open connections finish their request until that deadline.
///
/// `make_handler` is asked for a handler per accepted connection (`None` drops the
/// connection: the server is going away); the handler answers each request.
pub(crate) async fn serve_listener<M, H, Fut, B>(
    listener: TcpListener,
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
    // Waited on here, while `closing` itself is handed to each connection.
    let mut asked_to_close = closing.clone();
    let deadline = loop {
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
                () = closed => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
            continue;
        }
        tokio::select! {
            deadline = close_asked(&mut asked_to_close) => break deadline,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
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
                    let task = connections.spawn(serve_connection(stream, admitted, handler, closing.clone()));
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
    // The port is free from here on.
    drop(listener);
    let drained = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(listener = %gate.label, open = connections.len(), "connections still open at the deadline; aborting them");
        connections.shutdown().await;
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

/// Serves one connection until it ends, times out or is asked to close.
async fn serve_connection<H, Fut, B>(
    stream: TcpStream,
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
        let request = request.map(|body| RequestBody::new(body, &body_limits));
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
            let response = match response {
                Either::Left(handled) => handled.await.map(Either::Left),
                Either::Right(early) => early.await,
            };
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
        .serve_connection(io, service);
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
}

impl RequestBody {
    fn new(inner: Incoming, limits: &ConnectionLimits) -> Self {
        let started = Instant::now();
        Self {
            inner,
            started,
            limit_at: started + limits.body_read_timeout,
            limit: limits.body_read_timeout,
            min_rate: limits.min_body_rate,
            received: 0,
            timer: None,
        }
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
