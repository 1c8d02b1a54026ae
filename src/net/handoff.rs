//! Handing the process's listening sockets to another process, and taking them from one.
//!
//! Two things let a new process serve on the very sockets an old one listened on, so that no
//! connection is refused while the binary changes or while systemd starts the service:
//!
//! - **Inherited sockets.** Sockets given at start (systemd's `LISTEN_FDS`, or an old
//!   swapvisor's upgrade hand-off) are offered here by name and address; a listener that would
//!   bind an address first takes a matching inherited socket ([`take`]), and only binds when
//!   there is none.
//! - **The accept switch.** Every accept loop of the process (each `http.server` listener and
//!   the admin API) follows one switch. A new process starts [`Accepting::Paused`]: connections
//!   wait in the kernel backlog its sockets share with the old process. The old process goes
//!   [`Accepting::Draining`]: it stops accepting, answers the next request of each open
//!   connection with `Connection: close` (so a client only sees a connection close between
//!   responses), and closes what is still idle at the deadline. Then the new one resumes.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::watch;
use tokio::time::Instant;

use super::gate::lock;
use super::listeners::ListenerKey;

/// What the accept loops of the process do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepting {
    /// Accept as usual.
    Open,
    /// Accept nothing; connections wait in the backlog (a new process before it is told to go).
    Paused,
    /// Accept nothing, close each open connection after its next response, and close the
    /// idle ones at the deadline (an old process handing over).
    Draining(Instant),
}

fn switch() -> &'static watch::Sender<Accepting> {
    static SWITCH: OnceLock<watch::Sender<Accepting>> = OnceLock::new();
    SWITCH.get_or_init(|| watch::channel(Accepting::Open).0)
}

/// Read once per response: whether it should close its connection.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Sets what every accept loop of the process does from now on.
pub(crate) fn set_accepting(accepting: Accepting) {
    DRAINING.store(
        matches!(accepting, Accepting::Draining(_)),
        Ordering::Relaxed,
    );
    switch().send_replace(accepting);
    let state = match accepting {
        Accepting::Open => "open",
        Accepting::Paused => "paused",
        Accepting::Draining(_) => "draining",
    };
    tracing::info!(state, "accept loops");
}

/// The switch, for an accept loop to follow.
pub(super) fn accepting() -> watch::Receiver<Accepting> {
    switch().subscribe()
}

/// Whether a response should close its connection (the process is handing over).
pub(super) fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Waits until no `http.server` listener of the process has an open connection, or until
/// `deadline`; whether they all closed.
pub(crate) async fn connections_closed(deadline: Instant) -> bool {
    loop {
        let gates: Vec<_> = lock(super::gate_metrics::gates())
            .iter()
            .filter_map(|g| g.upgrade())
            .filter(|g| g.kind == "http.server")
            .collect();
        let Some(busy) = gates.into_iter().find(|g| !lock(&g.open).is_empty()) else {
            return true;
        };
        let closed = busy.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if lock(&busy.open).is_empty() {
            continue;
        }
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            return false;
        }
    }
}

/// A socket given to this process at start, not yet taken by a listener.
struct Inherited {
    /// Its name: systemd's `FileDescriptorName=`, or the hand-off name of the old process's
    /// listener (see [`handoff_name`]).
    name: String,
    local: SocketAddr,
    listener: TcpListener,
}

fn inherited() -> &'static Mutex<Vec<Inherited>> {
    static INHERITED: OnceLock<Mutex<Vec<Inherited>>> = OnceLock::new();
    INHERITED.get_or_init(Mutex::default)
}

/// Offers `listener`, given to this process under `name`, to the listener that will bind a
/// matching address. Fails when it is not a listening TCP socket.
pub(crate) fn offer(name: String, listener: TcpListener) -> std::io::Result<SocketAddr> {
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    tracing::info!(%name, %local, "inherited a listening socket");
    lock(inherited()).push(Inherited {
        name,
        local,
        listener,
    });
    Ok(local)
}

/// The name a listener is handed over under: its configured address, and for an ephemeral
/// port (0) also its server's name, which is what tells two such listeners apart.
pub(crate) fn handoff_name(key: &ListenerKey) -> String {
    match &key.owner {
        Some(owner) => format!("{}#{owner}", key.address),
        None => key.address.to_string(),
    }
}

/// Takes the inherited socket for `key`, if one was given: see [`take_named`], under the
/// key's hand-off name.
pub(crate) fn take(key: &ListenerKey) -> Option<TcpListener> {
    take_named(&handoff_name(key), key.address)
}

/// Takes the inherited socket named `name` (the admin API's is `admin`; a listener's is its
/// [`handoff_name`]), else, for a fixed port, one bound to `address`: `[::]` and `0.0.0.0` on
/// the same port count as the same address, as systemd's `ListenStream=PORT` binds `[::]`
/// dual-stack.
pub(crate) fn take_named(name: &str, address: SocketAddr) -> Option<TcpListener> {
    let mut sockets = lock(inherited());
    let by_address = |sockets: &[Inherited]| {
        let fixed = address.port() != 0;
        fixed
            .then(|| sockets.iter().position(|s| same_address(s.local, address)))
            .flatten()
    };
    let position = sockets
        .iter()
        .position(|s| s.name == name)
        .or_else(|| by_address(&sockets))?;
    let socket = sockets.swap_remove(position);
    tracing::info!(%name, %address, local = %socket.local, given_as = %socket.name, "serving on an inherited socket");
    Some(socket.listener)
}

/// A duplicate of each inherited socket no listener took, by name: handed on in an upgrade,
/// so that a later reload in the new process can still use it.
pub(crate) fn untaken_duplicates() -> std::io::Result<Vec<(String, std::os::fd::OwnedFd)>> {
    use std::os::fd::AsFd;
    lock(inherited())
        .iter()
        .map(|s| Ok((s.name.clone(), s.listener.as_fd().try_clone_to_owned()?)))
        .collect()
}

/// The inherited sockets no listener took, by name and address.
pub(crate) fn untaken() -> Vec<(String, SocketAddr)> {
    lock(inherited())
        .iter()
        .map(|s| (s.name.clone(), s.local))
        .collect()
}

fn same_address(bound: SocketAddr, configured: SocketAddr) -> bool {
    bound == configured
        || (bound.port() == configured.port()
            && bound.ip().is_unspecified()
            && configured.ip().is_unspecified())
}
