//! The gate of one listener: which connections it admits, and which it closes to make room.
//!
//! The gate admits at most [`ConnectionLimits::max_connections`] connections, and the
//! `http.server` gates together at most the process's connection budget (see
//! [`super::limits`]). At the cap, the gate closes the connection that has waited longest
//! without sending a whole request head; when every connection is busy with a request, it stops
//! accepting and the kernel's backlog holds the rest. Reaching the cap is logged once (and again
//! only after the listener had room) and counted. Past the cap, a gate with probe paths admits a
//! few connections more on a reserve of its own, each for one health probe.
//!
//! Which connection waits for a head is read from its [`Clock`]; the gate keeps the clock of
//! each open connection and nothing else per connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::clock::{Clock, EVICTED, MAX_MS, WAITING};
use super::limits::{ConnectionLimits, DescriptorBudget};

/// The connections of one listener: its cap, its open connections and its counters.
pub(crate) struct Gate {
    /// The listener's address, as `/metrics` labels it.
    pub(super) label: String,
    /// What serves behind it: `http.server` or `admin`.
    pub(super) kind: &'static str,
    pub(super) limits: ArcSwap<ConnectionLimits>,
    /// The process budget the connections also count against; none for the admin API, whose
    /// connections come out of the reserve.
    budget: Option<&'static DescriptorBudget>,
    pub(super) open: Mutex<HashMap<u64, Arc<Tracked>>>,
    next_id: AtomicU64,
    /// Notified whenever a connection of this gate closes.
    pub(super) closed: Notify,
    pub(super) origin: Instant,
    /// Evicted connections whose task has not ended yet: each still holds its descriptor.
    evicting: AtomicUsize,
    at_cap: AtomicBool,
    pub(super) counters: GateCounters,
    /// Paths answered on the probe reserve (`/healthz`, `/readyz`); empty for no reserve.
    pub(super) probes: &'static [&'static str],
    /// Connections open on the probe reserve.
    reserve_open: AtomicUsize,
}

/// How many connections a gate with probes admits past its cap, each for one probe request:
/// a liveness probe is answered even while every ordinary connection is busy (a flood of
/// slow request bodies, say), so an orchestrator does not kill a healthy server.
const PROBE_RESERVE: usize = 8;

/// Whether a connection just accepted may be served, and on which allowance.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
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
pub(super) struct GateCounters {
    pub(super) accepted: AtomicU64,
    pub(super) at_cap: AtomicU64,
    pub(super) evicted: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) probe_reserve: AtomicU64,
    pub(super) header_timeouts: AtomicU64,
    pub(super) idle_timeouts: AtomicU64,
}

/// A lock over plain data updated in short sections; a panic cannot leave it half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        let mut all = lock(super::gate_metrics::gates());
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

    pub(super) fn limits(&self) -> Arc<ConnectionLimits> {
        self.limits.load_full()
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(MAX_MS)
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
    pub(super) fn may_accept(&self) -> bool {
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
    pub(super) fn make_room(&self) -> Option<Admission> {
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

    pub(super) fn admit(self: &Arc<Self>, admission: Admission) -> Arc<Tracked> {
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

    pub(super) fn release(&self, tracked: &Tracked) {
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
}

/// One open connection, as its gate sees it.
pub(super) struct Tracked {
    id: u64,
    pub(super) clock: Clock,
    /// Set right after the connection's task is spawned; aborting it closes the socket.
    pub(super) abort: OnceLock<AbortHandle>,
    pub(super) admission: Admission,
}

/// Removes a connection from its gate when its task ends, however it ends.
pub(super) struct Admitted {
    pub(super) gate: Arc<Gate>,
    pub(super) tracked: Arc<Tracked>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.release(&self.tracked);
    }
}
