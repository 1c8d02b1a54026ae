//! How many connections a listener may hold, and how long a connection may take.
//!
//! Descriptors are per process: a connection held open on the admin port takes a descriptor
//! the engine's listeners, a reload's config read or a plugin process would need. So the
//! process's descriptor limit is split once, at first use, into
//!
//! - a **reserve** that no listener's connections may take: room for the admin API's own
//!   connections (capped separately) and for everything that is not a connection (config
//!   reads, newly bound addresses, plugin processes, log files);
//! - a **connection budget** that every `http.server` listener of the process draws from.
//!
//! Each listener also has its own cap ([`ConnectionLimits::max_connections`]). A listener at
//! its cap, or with the budget spent, first closes its longest-waiting connection that has not
//! sent a whole request head yet (a slow or idle one: what a flood of slow connections is made
//! of, and what nginx drains first when it runs out of connections); with none to close, it
//! stops accepting and new connections wait in the kernel's backlog.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The timeouts and the connection cap of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a connection may take to send a whole request head, from when it was accepted
    /// or from the first byte of a request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait, after a response, for the first byte of its
    /// next request.
    pub idle_timeout: Duration,
    /// How long a request may take to send its whole body, from when its head arrived. A body
    /// read past it is answered 408.
    pub body_read_timeout: Duration,
    /// The slowest a body may arrive, in bytes per second on average, once the first
    /// [`BODY_RATE_GRACE`](Self::BODY_RATE_GRACE) have passed; a slower one is answered 408.
    /// So a small body gets a short deadline and a large one a long one, within
    /// `body_read_timeout`. 0 turns the rate off.
    pub min_body_rate: u64,
    /// The most connections the listener holds at once.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The default [`header_read_timeout`](Self::header_read_timeout).
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default [`idle_timeout`](Self::idle_timeout).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default [`body_read_timeout`](Self::body_read_timeout).
    pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default [`min_body_rate`](Self::min_body_rate): 1 KiB/s, which a phone on a bad
    /// network still manages, and which frees a connection sending a byte a second within
    /// seconds instead of holding it for the whole body timeout.
    pub const DEFAULT_MIN_BODY_RATE: u64 = 1024;
    /// How long a body may take before [`min_body_rate`](Self::min_body_rate) applies: a
    /// body of `n` bytes must be whole within this grace plus `n / min_body_rate` seconds.
    pub const BODY_RATE_GRACE: Duration = Duration::from_secs(10);

    /// The defaults for an `http.server` listener: the timeouts above, and the process's whole
    /// connection budget as its cap.
    pub fn server_defaults() -> Self {
        Self::with_cap(DescriptorBudget::global().connections())
    }

    /// The defaults for the admin API: the timeouts above, and the admin share of the reserve.
    pub fn admin_defaults() -> Self {
        Self::with_cap(DescriptorBudget::global().admin_connections())
    }

    fn with_cap(max_connections: usize) -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: Self::DEFAULT_BODY_READ_TIMEOUT,
            min_body_rate: Self::DEFAULT_MIN_BODY_RATE,
            max_connections,
        }
    }
}

/// The process's descriptor limit, split into the connection budget and the reserve.
#[derive(Debug)]
pub struct DescriptorBudget {
    limit: usize,
    admin: usize,
    connections: usize,
    in_use: AtomicUsize,
}

/// The admin API's default cap: probes and operators, not traffic.
const ADMIN_CONNECTIONS: usize = 256;
/// The least the reserve keeps for what is not a connection.
const MIN_SPARE: usize = 64;
/// Used when the limit cannot be read, and the largest limit planned with (an unlimited
/// descriptor limit is still bounded by memory).
const FALLBACK_LIMIT: usize = 1024;
const MAX_PLANNED_LIMIT: usize = 1 << 20;

impl DescriptorBudget {
    /// Splits a descriptor limit of `limit`: the admin API gets an eighth (at most 256), a
    /// spare of a sixteenth (at least 64) is kept for everything else, and the rest is the
    /// connection budget of the `http.server` listeners.
    pub fn for_limit(limit: u64) -> Self {
        let limit = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(MAX_PLANNED_LIMIT);
        let admin = (limit / 8).clamp(1, ADMIN_CONNECTIONS);
        let spare = (limit / 16).max(MIN_SPARE);
        let connections = limit.saturating_sub(admin + spare).max(1);
        Self {
            limit,
            admin,
            connections,
            in_use: AtomicUsize::new(0),
        }
    }

    /// Raises this process's soft limit on open files to its hard limit, as `swapvisor run`
    /// does at start; returns the soft limit before and after. Call it before the first
    /// listener is bound: the budget is planned from the limit then.
    pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
        super::descriptors::raise_open_file_limit()
    }

    /// The budget of this process, planned from its soft descriptor limit the first time it is
    /// asked for (`swapvisor run` raises the limit before that).
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<DescriptorBudget> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let limit = match super::descriptors::open_file_limit() {
                Ok((soft, _)) => soft,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the open-file limit; planning with 1024");
                    FALLBACK_LIMIT as u64
                }
            };
            let budget = Self::for_limit(limit);
            tracing::debug!(
                limit = budget.limit,
                connections = budget.connections,
                admin = budget.admin,
                "descriptor budget"
            );
            budget
        })
    }

    /// The descriptor limit this budget was planned from.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many connections the `http.server` listeners may hold together.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// The admin API's default cap.
    pub fn admin_connections(&self) -> usize {
        self.admin
    }

    /// How many connections of the budget are open now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    pub(super) fn has_room(&self) -> bool {
        self.in_use() < self.connections
    }

    pub(super) fn take(&self) {
        self.in_use.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn give_back(&self) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_keeps_room_for_the_admin_api_and_for_what_is_not_a_connection() {
        let small = DescriptorBudget::for_limit(1024);
        assert_eq!((small.admin_connections(), small.connections()), (128, 832));
        let systemd = DescriptorBudget::for_limit(524_288);
        assert_eq!(systemd.admin_connections(), 256);
        assert_eq!(systemd.connections(), 524_288 - 256 - 32_768);
        let tiny = DescriptorBudget::for_limit(64);
        assert_eq!((tiny.admin_connections(), tiny.connections()), (8, 1));
        let unlimited = DescriptorBudget::for_limit(u64::MAX);
        assert_eq!(unlimited.limit(), 1 << 20);
    }
}
