//! The listener pool: bound sockets shared by reference count, with their accept loops.
//!
//! A listener is bound by the first [`ListenerPool::acquire`] of its address and closed when
//! its last [`ListenerLease`] is released. Closing stops accepting at once (the port is free
//! again immediately), asks every open connection to finish its in-flight request and close,
//! and aborts the stragglers at the deadline.
//!
//! A [`PoolHold`] keeps listeners whose last lease was released open until the hold ends. A
//! stop-first swap takes one, so the old engine's stop does not close a socket that the new
//! engine is about to take: connections wait in the kernel backlog instead of being refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A request as it arrives on a pooled listener.
pub(crate) type HttpRequest = hyper::Request<Incoming>;
/// The response a dispatcher gives back.
pub(crate) type HttpResponse = hyper::Response<Full<Bytes>>;

/// Routes each request that arrives on a pooled listener.
pub(crate) trait HttpDispatch: Send + Sync + 'static {
    /// Answers `request`, which arrived on the listener known as `listener`.
    fn dispatch(
        &self,
        listener: &ListenerKey,
        request: HttpRequest,
    ) -> BoxFuture<'static, HttpResponse>;
}

/// How the pool tells listeners apart: the configured address, and for port 0 (an ephemeral
/// port) also the owning server's name, so that two servers on `127.0.0.1:0` get two sockets
/// while a reload that keeps a server keeps its ephemeral port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    /// The address as configured.
    pub address: SocketAddr,
    /// The server's name, when the port is 0.
    pub owner: Option<Arc<str>>,
}

impl ListenerKey {
    /// The key for a server named `owner` configured with `address`.
    pub fn new(address: SocketAddr, owner: &str) -> Self {
        Self {
            address,
            owner: (address.port() == 0).then(|| Arc::from(owner)),
        }
    }
}

impl fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Some(owner) => write!(f, "{} (ephemeral, server {owner:?})", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// Bound listeners by [`ListenerKey`], shared by the engines of one runtime. Cheap to clone.
#[derive(Clone, Default)]
pub struct ListenerPool {
    inner: Arc<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    entries: Mutex<PoolEntries>,
    dispatch: OnceLock<Arc<dyn HttpDispatch>>,
}

#[derive(Default)]
struct PoolEntries {
    listeners: HashMap<ListenerKey, Entry>,
    holds: usize,
}

struct Entry {
    leases: usize,
    listener: Arc<ServedListener>,
}

impl fmt::Debug for ListenerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerPool")
            .field("listeners", &self.addresses())
            .finish()
    }
}

impl ListenerPool {
    /// An empty pool whose requests are routed by `dispatch`.
    pub(crate) fn new(dispatch: Arc<dyn HttpDispatch>) -> Self {
        let pool = Self::default();
        pool.set_dispatch(dispatch);
        pool
    }

    /// Routes this pool's requests through `dispatch`, unless a dispatcher is already set.
    /// Returns whether it was set.
    pub(crate) fn set_dispatch(&self, dispatch: Arc<dyn HttpDispatch>) -> bool {
        self.inner.dispatch.set(dispatch).is_ok()
    }

    /// Takes a lease on the listener for `key`, binding it if no one holds it yet.
    ///
    /// Fails when the address cannot be bound, for example because another process holds it.
    pub fn acquire(&self, key: &ListenerKey) -> Result<ListenerLease, std::io::Error> {
        let mut entries = self.lock();
        if let Some(entry) = entries.listeners.get_mut(key) {
            entry.leases += 1;
            return Ok(ListenerLease {
                pool: Arc::downgrade(&self.inner),
                key: key.clone(),
                local_addr: entry.listener.local_addr,
                released: false,
            });
        }
        let listener = ServedListener::bind(key.clone(), Arc::downgrade(&self.inner))?;
        let local_addr = listener.local_addr;
        tracing::info!(address = %key, %local_addr, "listener bound");
        entries.listeners.insert(
            key.clone(),
            Entry {
                leases: 1,
                listener: Arc::new(listener),
            },
        );
        Ok(ListenerLease {
            pool: Arc::downgrade(&self.inner),
            key: key.clone(),
            local_addr,
            released: false,
        })
    }

    /// Keeps released listeners open until the returned hold is dropped.
    pub(crate) fn hold(&self) -> PoolHold {
        self.lock().holds += 1;
        PoolHold {
            pool: Arc::downgrade(&self.inner),
        }
    }

    /// The bound addresses, as `(configured, actual)` pairs.
    pub(crate) fn addresses(&self) -> Vec<(ListenerKey, SocketAddr)> {
        let mut out: Vec<_> = self
            .lock()
            .listeners
            .iter()
            .map(|(key, entry)| (key.clone(), entry.listener.local_addr))
            .collect();
        out.sort_by_key(|(_, local)| *local);
        out
    }

    /// Closes every listener now, whoever holds leases on it, finishing connections until
    /// `deadline`. For shutdown.
    pub(crate) async fn close_all(&self, deadline: Instant) {
        let listeners: Vec<_> = self
            .lock()
            .listeners
            .drain()
            .map(|(_, e)| e.listener)
            .collect();
        futures::future::join_all(listeners.iter().map(|l| l.close(deadline))).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolEntries> {
        lock(&self.inner)
    }
}

/// The pool's bookkeeping is plain data updated in short critical sections; a panic elsewhere
/// cannot leave it half-written, so a poisoned lock is still safe to use.
fn lock(inner: &PoolInner) -> std::sync::MutexGuard<'_, PoolEntries> {
    inner.entries.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes and returns the listeners that have no lease, when nothing holds the pool open.
fn take_unleased(entries: &mut PoolEntries) -> Vec<Arc<ServedListener>> {
    if entries.holds > 0 {
        return Vec::new();
    }
    let idle: Vec<ListenerKey> = entries
        .listeners
        .iter()
        .filter(|(_, e)| e.leases == 0)
        .map(|(k, _)| k.clone())
        .collect();
    idle.iter()
        .filter_map(|k| entries.listeners.remove(k))
        .map(|e| e.listener)
        .collect()
}

/// A share of one pooled listener. Release it with [`ListenerLease::release`] to close the
/// listener gracefully when it is the last; dropping it closes it in the background.
pub struct ListenerLease {
    pool: Weak<PoolInner>,
    key: ListenerKey,
    local_addr: SocketAddr,
    released: bool,
}

impl fmt::Debug for ListenerLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerLease")
            .field("key", &self.key)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl ListenerLease {
    /// The address the socket is actually bound to (the real port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The pool key.
    pub fn key(&self) -> &ListenerKey {
        &self.key
    }

    /// Gives the lease back. When it was the last, the listener stops accepting and its
    /// connections finish until `deadline`; this waits for that.
    pub async fn release(mut self, deadline: Instant) {
        self.released = true;
        for listener in self.give_back() {
            listener.close(deadline).await;
        }
    }

    fn give_back(&self) -> Vec<Arc<ServedListener>> {
        let Some(pool) = self.pool.upgrade() else {
            return Vec::new();
        };
        let mut entries = lock(&pool);
        if let Some(entry) = entries.listeners.get_mut(&self.key) {
            entry.leases = entry.leases.saturating_sub(1);
        }
        take_unleased(&mut entries)
    }
}

impl Drop for ListenerLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        close_in_background(self.give_back());
    }
}

/// Keeps listeners open while it lives, even with no lease; see [`ListenerPool::hold`].
pub(crate) struct PoolHold {
    pool: Weak<PoolInner>,
}

impl Drop for PoolHold {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let closing = {
            let mut entries = lock(&pool);
            entries.holds = entries.holds.saturating_sub(1);
            take_unleased(&mut entries)
        };
        close_in_background(closing);
    }
}

/// Closes `listeners` from a drop, where nothing can be awaited: in a task, with a 5 s
/// deadline for their connections.
fn close_in_background(listeners: Vec<Arc<ServedListener>>) {
    if listeners.is_empty() {
        return;
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let deadline = Instant::now() + Duration::from_secs(5);
        handle.spawn(async move {
            for listener in listeners {
                listener.close(deadline).await;
            }
        });
    }
}

/// Binds `address`. The IPv6 unspecified address (`[::]`, what `:port` means) is bound
/// dual-stack, so IPv4 clients reach it too whatever the system's `bindv6only` default; without
/// IPv6 on the machine it falls back to `0.0.0.0`.
fn bind_socket(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    if address.ip() != std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        return std::net::TcpListener::bind(address);
    }
    let dual_stack = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        // As std's bind does on Unix: a restart may rebind while old connections sit in
        // TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    match dual_stack() {
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
            ) =>
        {
            tracing::info!(%address, "IPv6 is not available; listening on IPv4 only");
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), address.port());
            std::net::TcpListener::bind(v4)
        }
        other => other,
    }
}

/// One bound socket and its accept loop.
struct ServedListener {
    local_addr: SocketAddr,
    /// Set to `Some(deadline)` to close: stop accepting, then finish connections by then.
    closing: watch::Sender<Option<Instant>>,
    accept_loop: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ServedListener {
    fn bind(key: ListenerKey, pool: Weak<PoolInner>) -> std::io::Result<Self> {
        let std_listener = bind_socket(key.address).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => " (the address is in use by another process)",
                std::io::ErrorKind::AddrNotAvailable => " (no local interface has this address)",
                std::io::ErrorKind::PermissionDenied => {
                    " (permission denied; ports below 1024 need privileges)"
                }
                _ => "",
            };
            std::io::Error::new(e.kind(), format!("cannot bind {}: {e}{hint}", key.address))
        })?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let local_addr = listener.local_addr()?;
        let (closing, closed) = watch::channel(None);
        let accept_loop = tokio::spawn(accept_loop(listener, key, pool, closed));
        Ok(Self {
            local_addr,
            closing,
            accept_loop: tokio::sync::Mutex::new(Some(accept_loop)),
        })
    }

    async fn close(&self, deadline: Instant) {
        self.closing.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(deadline);
                true
            } else {
                false
            }
        });
        let handle = self.accept_loop.lock().await.take();
        if let Some(handle) = handle {
            let _ = handle.await;
            tracing::info!(local_addr = %self.local_addr, "listener closed");
        }
    }
}

/// Accepts connections until asked to close, then drains them until the deadline.
async fn accept_loop(
    listener: TcpListener,
    key: ListenerKey,
    pool: Weak<PoolInner>,
    mut closing: watch::Receiver<Option<Instant>>,
) {
    let mut connections = JoinSet::new();
    let deadline = loop {
        tokio::select! {
            changed = closing.changed() => {
                match (changed, *closing.borrow()) {
                    (Ok(()), Some(deadline)) => break deadline,
                    (Ok(()), None) => continue,
                    (Err(_), _) => break Instant::now(),
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let Some(dispatch) = pool.upgrade().and_then(|p| p.dispatch.get().cloned()) else {
                        continue; // the pool is gone: drop the connection
                    };
                    connections.spawn(serve_connection(stream, key.clone(), dispatch, closing.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(address = %key, error = %e, "accept failed");
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
        tracing::warn!(address = %key, open = connections.len(), "connections still open at the deadline; aborting them");
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    key: ListenerKey,
    dispatch: Arc<dyn HttpDispatch>,
    mut closing: watch::Receiver<Option<Instant>>,
) {
    let service = hyper::service::service_fn(move |request| {
        let response = dispatch.dispatch(&key, request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let close_requested = async move {
        let _ = closing.wait_for(Option::is_some).await;
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        () = close_requested => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
