//! Binding a listening socket: a deep backlog, and dual-stack for `[::]`.

use std::net::SocketAddr;

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
