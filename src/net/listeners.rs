//! The listener pool: bound sockets shared by reference count, with their accept loops.
//!
//! A listener is bound by the first [`ListenerPool::acquire`] of its address and closed when
//! its last [`ListenerLease`] is released. Closing stops accepting at once (the port is free
//! again immediately), asks every open connection to finish its in-flight request and close,
//! and aborts the stragglers at the deadline.
//!
//! A `PoolHold` keeps listeners whose last lease was released open until the hold ends. A
//! stop-first swap takes one, so the old engine's stop does not close a socket that the new
//! engine is about to take: connections wait in the kernel backlog instead of being refused.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use super::accept::serve_listener;
use super::bind::bind;
use super::gate::Gate;
use super::limits::{ConnectionLimits, DescriptorBudget};

/// A request as it arrives on a pooled listener.
pub(crate) type HttpRequest = super::request_body::Request;
/// The response a dispatcher gives back.
pub(crate) type HttpResponse = hyper::Response<ResponseBody>;

/// A response body: whole (every answer the engine writes itself, with no allocation beyond its
/// bytes) or streamed (a proxied backend's, see [`StreamBody`]).
pub(crate) type ResponseBody = http_body_util::Either<Full<Bytes>, StreamBody>;

/// A body streamed from elsewhere, such as a backend: what a step hands the engine to answer
/// with (see `HttpExchange::respond` in `extension::http`).
pub type StreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The error of a streamed body: any error, as hyper takes it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A whole response body.
pub(crate) fn whole(bytes: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Either::Left(Full::new(bytes.into()))
}

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
    next_lease: u64,
}

struct Entry {
    /// The limits each live lease asked for, by lease id; the newest lease's apply, so that a
    /// reload's new limits take effect when it starts and a rolled-back one's go with it.
    leases: Vec<(u64, ConnectionLimits)>,
    listener: Arc<ServedListener>,
}

impl Entry {
    fn apply_newest_limits(&self) {
        if let Some((_, limits)) = self.leases.last() {
            self.listener.gate.set_limits(*limits);
        }
    }
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

    /// Takes a lease on the listener for `key` with the default [`ConnectionLimits`], binding
    /// it if no one holds it yet.
    ///
    /// Fails when the address cannot be bound, for example because another process holds it.
    pub fn acquire(&self, key: &ListenerKey) -> Result<ListenerLease, std::io::Error> {
        self.acquire_with(key, ConnectionLimits::server_defaults())
    }

    /// Takes a lease on the listener for `key`, binding it if no one holds it yet. `limits`
    /// apply to the listener from now on, until a newer lease's replace them or this lease is
    /// released (the previous lease's apply again).
    ///
    /// Fails when the address cannot be bound, for example because another process holds it.
    pub fn acquire_with(
        &self,
        key: &ListenerKey,
        limits: ConnectionLimits,
    ) -> Result<ListenerLease, std::io::Error> {
        let mut entries = self.lock();
        entries.next_lease += 1;
        let id = entries.next_lease;
        let lease = |local_addr| ListenerLease {
            pool: Arc::downgrade(&self.inner),
            key: key.clone(),
            id,
            local_addr,
            released: false,
        };
        if let Some(entry) = entries.listeners.get_mut(key) {
            entry.leases.push((id, limits));
            entry.apply_newest_limits();
            return Ok(lease(entry.listener.local_addr));
        }
        let listener = ServedListener::bind(key.clone(), limits, Arc::downgrade(&self.inner))?;
        let local_addr = listener.local_addr;
        tracing::info!(address = %key, %local_addr, max_connections = limits.max_connections, "listener bound");
        entries.listeners.insert(
            key.clone(),
            Entry {
                leases: vec![(id, limits)],
                listener: Arc::new(listener),
            },
        );
        Ok(lease(local_addr))
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

    /// A duplicate of every listening socket, by the name an upgrade's new process takes it by.
    #[cfg(feature = "cli")]
    pub(crate) fn handoff(&self) -> std::io::Result<Vec<(String, std::os::fd::OwnedFd)>> {
        use std::os::fd::AsFd;
        let listeners: Vec<_> = self
            .lock()
            .listeners
            .values()
            .map(|e| e.listener.clone())
            .collect();
        // Only a listener whose accept loop still runs has a socket to hand over.
        let sockets = listeners
            .iter()
            .filter_map(|l| Some((&l.key_name, l.socket.upgrade()?)));
        sockets
            .map(|(name, socket)| Ok((name.clone(), socket.as_fd().try_clone_to_owned()?)))
            .collect()
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
        .filter(|(_, e)| e.leases.is_empty())
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
    id: u64,
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
            entry.leases.retain(|(id, _)| *id != self.id);
            entry.apply_newest_limits();
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

/// One bound socket and its accept loop.
#[cfg_attr(not(feature = "cli"), allow(dead_code))] // The hand-off fields are the binary's.
struct ServedListener {
    /// The name it is handed to a new process under.
    key_name: String,
    /// The socket, owned by the accept loop (whose end frees the port): duplicated for a
    /// hand-off while the loop runs.
    socket: Weak<TcpListener>,
    local_addr: SocketAddr,
    gate: Arc<Gate>,
    /// Set to `Some(deadline)` to close: stop accepting, then finish connections by then.
    closing: watch::Sender<Option<Instant>>,
    accept_loop: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ServedListener {
    fn bind(
        key: ListenerKey,
        limits: ConnectionLimits,
        pool: Weak<PoolInner>,
    ) -> std::io::Result<Self> {
        let key_name = super::handoff::handoff_name(&key);
        let inherited = super::handoff::take(&key);
        let std_listener = match inherited {
            Some(listener) => Ok(listener),
            None => bind(key.address),
        }
        .map_err(|e| {
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
        let listener = Arc::new(TcpListener::from_std(std_listener)?);
        let local_addr = listener.local_addr()?;
        let socket = Arc::downgrade(&listener);
        let gate = Gate::new(
            local_addr.to_string(),
            "http.server",
            limits,
            Some(DescriptorBudget::global()),
            &[],
        );
        let (closing, closed) = watch::channel(None);
        let make_handler = move || {
            // The pool is gone: drop the connection.
            let dispatch = pool.upgrade().and_then(|p| p.dispatch.get().cloned())?;
            let key = key.clone();
            Some(move |request| dispatch.dispatch(&key, request))
        };
        let accept_loop =
            tokio::spawn(serve_listener(listener, gate.clone(), closed, make_handler));
        Ok(Self {
            key_name,
            socket,
            local_addr,
            gate,
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
