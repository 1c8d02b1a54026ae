//! One backend of an upstream: its address, its health as the checks and the traffic see it,
//! and what it has served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::time::Instant;

/// How one request to a target ended, as counted in status and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A response below 500.
    Ok,
    /// A 5xx response.
    ServerError,
    /// No connection could be made: the request was never sent.
    ConnectFailed,
    /// The connection failed or timed out after the request may have been sent.
    Failed,
}

impl Outcome {
    pub(super) const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::ServerError,
        Outcome::ConnectFailed,
        Outcome::Failed,
    ];

    /// Its place in [`Outcome::ALL`] (the declaration order).
    fn index(self) -> usize {
        self as usize
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ServerError => "server_error",
            Outcome::ConnectFailed => "connect_failed",
            Outcome::Failed => "failed",
        }
    }
}

/// A backend, shared by every request and check of one upstream instance.
#[derive(Debug)]
pub(super) struct Target {
    /// `host:port`, as configured.
    pub(super) address: String,
    /// `http://host:port`, the base of every request to it.
    pub(super) base: String,
    /// Requests being answered now.
    pub(super) in_flight: AtomicUsize,
    /// What the active health check says (true until a check says otherwise).
    pub(super) healthy: AtomicBool,
    /// Until when traffic ejected it, in milliseconds after the upstream's origin (0: not).
    ejected_until: AtomicU64,
    /// Consecutive connect failures and 5xx answers, for passive ejection.
    consecutive_failures: AtomicU32,
    /// Requests by [`Outcome`], in the order of [`Outcome::ALL`].
    outcomes: [AtomicU64; 4],
    /// Times traffic ejected it.
    pub(super) ejections: AtomicU64,
}

impl Target {
    pub(super) fn new(address: String) -> Self {
        let base = format!("http://{address}");
        Self {
            address,
            base,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            outcomes: Default::default(),
            ejections: AtomicU64::new(0),
        }
    }

    /// Whether requests may go to it now: healthy and not ejected.
    pub(super) fn usable(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now_ms
    }

    /// Counts a request's outcome, and ejects the target for `eject_ms` after `after`
    /// consecutive connect failures or 5xx answers (0: never).
    pub(super) fn record(&self, outcome: Outcome, now_ms: u64, after: u32, eject_ms: u64) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::ServerError | Outcome::ConnectFailed => {
                let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if after > 0 && failures >= after {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                    self.ejected_until
                        .store(now_ms.saturating_add(eject_ms).max(1), Ordering::Relaxed);
                    self.ejections.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target_address = %self.address, failures, "upstream target ejected");
                }
            }
            Outcome::Ok => self.consecutive_failures.store(0, Ordering::Relaxed),
            Outcome::Failed => {}
        }
    }

    /// Requests that ended with `outcome`.
    pub(super) fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()].load(Ordering::Relaxed)
    }

    /// The target in status.
    pub(super) fn status(&self, now_ms: u64) -> Value {
        let outcomes: serde_json::Map<String, Value> = Outcome::ALL
            .iter()
            .map(|o| (o.label().to_owned(), Value::from(self.count(*o))))
            .collect();
        json!({
            "address": self.address,
            "healthy": self.healthy.load(Ordering::Relaxed),
            "ejected": self.ejected_until.load(Ordering::Relaxed) > now_ms,
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "requests": outcomes,
            "ejections": self.ejections.load(Ordering::Relaxed),
        })
    }
}

/// Milliseconds since `origin`, the clock targets keep their ejections on.
pub(super) fn millis_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Counts a request in flight on a target for as long as it lives: until its response body has
/// been streamed whole, when it rides along with the body.
pub(crate) struct InFlight(Arc<Target>);

impl InFlight {
    pub(super) fn new(target: &Arc<Target>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(target.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
