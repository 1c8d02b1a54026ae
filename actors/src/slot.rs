//! The request path: a lock-free handle to the live unit, with in-flight accounting.
//!
//! Callers never go through an actor to reach the live unit. A [`Slot`] publishes it through an
//! atomic pointer; [`Slot::acquire`] takes a [`Lease`] on whatever is live at that moment and
//! counts it as in flight until the lease is dropped. A swap publishes the new unit with one
//! pointer store; leases already taken finish on the old unit, and the swap waits for them to
//! drain before stopping it.
//!
//! Between unpublishing the old unit and publishing the new one (a stop-first swap, or a
//! handover of state), the slot is *closed*: `acquire` waits at the gate instead of failing,
//! for at most the slot's gate timeout.
//!
//! The cost of an acquire on the steady path is one atomic pointer load with a reference
//! count, and one increment and one decrement of the in-flight counter.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How many counters an in-flight count is spread over: callers on different threads count
/// on different cache lines, so a busy slot does not bounce one line between cores.
const SHARDS: usize = 8;

/// One in-flight counter on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(AtomicUsize);

thread_local! {
    /// The shard this thread counts on.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// One published unit with its generation and in-flight count.
pub(crate) struct Live<U> {
    unit: Arc<U>,
    generation: u64,
    in_flight: [Shard; SHARDS],
    retiring: AtomicBool,
    drained: Notify,
}

impl<U> Live<U> {
    pub(crate) fn new(unit: Arc<U>, generation: u64) -> Arc<Self> {
        Arc::new(Self {
            unit,
            generation,
            in_flight: Default::default(),
            retiring: AtomicBool::new(false),
            drained: Notify::new(),
        })
    }

    /// The published unit itself.
    pub(crate) fn unit(&self) -> &Arc<U> {
        &self.unit
    }

    /// The generation it was published under.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Leases currently taken on it.
    pub(crate) fn in_flight(&self) -> usize {
        // A lease is given back on the shard it was taken on, so no shard goes below zero.
        self.in_flight
            .iter()
            .map(|shard| shard.0.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits until no lease is left or `deadline` passes; true when drained.
    ///
    /// Call only after the unit was unpublished: new leases then go elsewhere, so the count
    /// only falls.
    pub(crate) async fn drain(&self, deadline: Instant) -> bool {
        self.retiring.store(true, Ordering::SeqCst);
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Register before checking, so a lease dropped in between still wakes us.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    fn take(&self, shard: usize) {
        self.in_flight[shard].0.fetch_add(1, Ordering::SeqCst);
    }

    fn release(&self, shard: usize) {
        // SeqCst pairs with `drain`: either the drainer's sum sees this decrement, or this load
        // sees `retiring` and wakes it (it then sums again).
        self.in_flight[shard].0.fetch_sub(1, Ordering::SeqCst);
        if self.retiring.load(Ordering::SeqCst) {
            self.drained.notify_waiters();
        }
    }
}

// Units need not be `Debug`: what is shown is the accounting around them.
impl<U> fmt::Debug for Live<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("generation", &self.generation)
            .field("in_flight", &self.in_flight())
            .field("retiring", &self.retiring.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// A unit taken from a [`Slot`]; counted as in flight until dropped. Dereferences to the unit.
pub struct Lease<U> {
    live: Arc<Live<U>>,
    /// The shard the lease was counted on; it is given back to the same one.
    shard: usize,
}

impl<U> Lease<U> {
    /// The generation of the leased unit.
    pub fn generation(&self) -> u64 {
        self.live.generation
    }

    /// The leased unit, shared.
    pub fn unit(&self) -> &Arc<U> {
        &self.live.unit
    }
}

impl<U> fmt::Debug for Lease<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("generation", &self.live.generation)
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl<U> Deref for Lease<U> {
    type Target = U;

    fn deref(&self) -> &U {
        &self.live.unit
    }
}

impl<U> Drop for Lease<U> {
    fn drop(&mut self) {
        self.live.release(self.shard);
    }
}

/// No unit became available within the gate timeout (the runtime is degraded or stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no unit is serving (waited {waited:?} at the gate)")]
pub struct Unavailable {
    /// How long the caller waited.
    pub waited: Duration,
}

/// The published live unit of one swap slot.
pub struct Slot<U> {
    current: ArcSwapOption<Live<U>>,
    opened: Notify,
    gate_timeout_ms: AtomicU64,
    /// What a caller meets when nothing is published: see [`GATE_WAIT`] and friends.
    gate: AtomicU8,
    /// How the units it published ended.
    pub(crate) retirements: crate::retirement::Retirements,
}

/// Nothing published because a swap is under way: wait for it.
const GATE_WAIT: u8 = 0;
/// Nothing published because the last swap left nothing serving: fail at once.
const GATE_DOWN: u8 = 1;
/// The slot is shut down for good: fail at once.
const GATE_CLOSED: u8 = 2;

impl<U> fmt::Debug for Slot<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gate = match self.gate.load(Ordering::SeqCst) {
            GATE_WAIT => "wait",
            GATE_DOWN => "down",
            _ => "closed",
        };
        f.debug_struct("Slot")
            .field("live", &self.current.load().as_deref())
            .field("gate", &gate)
            .field("gate_timeout", &self.gate_timeout())
            .field("retirements", &self.retirements)
            .finish_non_exhaustive()
    }
}

impl<U> Default for Slot<U> {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl<U> Slot<U> {
    /// An empty, closed slot whose callers wait at most `gate_timeout` for a unit.
    pub fn new(gate_timeout: Duration) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            opened: Notify::new(),
            gate_timeout_ms: AtomicU64::new(
                u64::try_from(gate_timeout.as_millis()).unwrap_or(u64::MAX),
            ),
            gate: AtomicU8::new(GATE_WAIT),
            retirements: Default::default(),
        }
    }

    /// How the units this slot published and replaced retired.
    pub fn retirements(&self) -> crate::retirement::RetirementStatus {
        self.retirements.status()
    }

    /// How long `acquire` waits at a closed gate.
    pub fn gate_timeout(&self) -> Duration {
        Duration::from_millis(self.gate_timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets how long `acquire` waits at a closed gate.
    pub fn set_gate_timeout(&self, timeout: Duration) {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.gate_timeout_ms.store(millis, Ordering::Relaxed);
    }

    /// Takes a lease on the live unit without waiting; `None` when the slot is closed.
    pub fn try_acquire(&self) -> Option<Lease<U>> {
        let shard = SHARD.with(|shard| *shard);
        loop {
            let live = self.current.load_full()?;
            live.take(shard);
            // If a swap unpublished this unit between the load and the increment, its drain may
            // already have seen zero: give the lease back and take the new unit instead.
            let still_live = self
                .current
                .load()
                .as_ref()
                .is_some_and(|now| Arc::ptr_eq(now, &live));
            if still_live {
                return Some(Lease { live, shard });
            }
            live.release(shard);
        }
    }

    /// Takes a lease on the live unit, waiting at a closed gate for up to the gate timeout.
    pub async fn acquire(&self) -> Result<Lease<U>, Unavailable> {
        if let Some(lease) = self.try_acquire() {
            return Ok(lease);
        }
        let started = Instant::now();
        let deadline = crate::guard::later(started, self.gate_timeout());
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if let Some(lease) = self.try_acquire() {
                return Ok(lease);
            }
            if self.gate.load(Ordering::SeqCst) != GATE_WAIT {
                return Err(Unavailable {
                    waited: started.elapsed(),
                });
            }
            if tokio::time::timeout_at(deadline, opened).await.is_err() {
                return self.try_acquire().ok_or(Unavailable {
                    waited: started.elapsed(),
                });
            }
        }
    }

    /// The live unit, without counting it as in flight (for status).
    pub fn current(&self) -> Option<Arc<U>> {
        self.current.load().as_ref().map(|live| live.unit.clone())
    }

    /// The published [`Live`] record, if any.
    pub(crate) fn current_live(&self) -> Option<Arc<Live<U>>> {
        self.current.load_full()
    }

    /// Leases taken on the live unit now.
    pub fn current_in_flight(&self) -> usize {
        self.current
            .load()
            .as_ref()
            .map_or(0, |live| live.in_flight())
    }

    /// The generation of the live unit.
    pub fn generation(&self) -> Option<u64> {
        self.current.load().as_ref().map(|live| live.generation)
    }

    /// Publishes `live` (or closes the gate with `None`: callers wait) and returns what was
    /// published before.
    pub(crate) fn publish(&self, live: Option<Arc<Live<U>>>) -> Option<Arc<Live<U>>> {
        let opening = live.is_some();
        if self.gate.load(Ordering::SeqCst) != GATE_CLOSED {
            self.gate.store(GATE_WAIT, Ordering::SeqCst);
        }
        let previous = self.current.swap(live);
        if opening {
            self.opened.notify_waiters();
        }
        previous
    }

    /// Marks the slot as having nothing to serve until the next publish: callers fail at once
    /// instead of waiting (the runtime is degraded).
    pub(crate) fn mark_down(&self) {
        let _ =
            self.gate
                .compare_exchange(GATE_WAIT, GATE_DOWN, Ordering::SeqCst, Ordering::SeqCst);
        self.opened.notify_waiters();
    }

    /// Unpublishes for good: every caller, waiting or new, fails at once.
    pub(crate) fn close(&self) -> Option<Arc<Live<U>>> {
        self.gate.store(GATE_CLOSED, Ordering::SeqCst);
        let previous = self.current.swap(None);
        self.opened.notify_waiters();
        previous
    }

    /// True while nothing is published and callers wait at the gate for a swap to finish.
    pub fn is_gated(&self) -> bool {
        self.current.load().is_none() && self.waits_when_empty()
    }

    /// True unless the slot is down (degraded) or closed: when nothing is published, callers
    /// wait for a swap to publish. Read after finding nothing published, this tells a swap
    /// under way from a slot with nothing to serve, without racing the publish that ends the
    /// swap (the gate stays open across it).
    pub fn waits_when_empty(&self) -> bool {
        self.gate.load(Ordering::SeqCst) == GATE_WAIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leases_follow_the_published_unit_and_drain() {
        let slot: Slot<&'static str> = Slot::new(Duration::from_millis(50));
        assert!(slot.try_acquire().is_none());
        let old = Live::new(Arc::new("old"), 1);
        slot.publish(Some(old.clone()));
        let lease = slot.acquire().await.unwrap();
        assert_eq!((*lease, lease.generation()), ("old", 1));
        assert_eq!(old.in_flight(), 1);

        let previous = slot.publish(Some(Live::new(Arc::new("new"), 2))).unwrap();
        assert_eq!(*slot.acquire().await.unwrap(), "new");
        // The old unit drains only when its last lease is dropped.
        let drain = tokio::spawn(async move {
            previous
                .drain(Instant::now() + Duration::from_secs(5))
                .await
        });
        drop(lease);
        assert!(drain.await.unwrap());
        assert_eq!(old.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_closed_gate_waits_for_the_next_unit_or_times_out() {
        let slot = Arc::new(Slot::new(Duration::from_secs(5)));
        let waiter = {
            let slot = slot.clone();
            tokio::spawn(async move { slot.acquire().await.map(|l| *l) })
        };
        tokio::task::yield_now().await;
        slot.publish(Some(Live::new(Arc::new(7), 1)));
        assert_eq!(waiter.await.unwrap(), Ok(7));

        slot.publish(None);
        slot.set_gate_timeout(Duration::from_millis(20));
        assert!(slot.acquire().await.is_err());

        // Down and closed slots refuse at once, whatever the gate timeout.
        slot.set_gate_timeout(Duration::from_secs(60));
        slot.mark_down();
        assert!(slot.acquire().await.is_err());
        slot.publish(Some(Live::new(Arc::new(8), 2)));
        assert_eq!(*slot.acquire().await.unwrap(), 8);
        slot.close();
        assert!(slot.acquire().await.is_err());
        slot.publish(Some(Live::new(Arc::new(9), 3)));
        slot.publish(None);
        assert!(slot.acquire().await.is_err(), "a closed slot stays closed");
    }

    #[tokio::test]
    async fn drain_gives_up_at_the_deadline() {
        let slot = Slot::new(Duration::from_secs(1));
        let live = Live::new(Arc::new(()), 1);
        slot.publish(Some(live.clone()));
        let _held = slot.try_acquire().unwrap();
        slot.publish(None);
        assert!(!live.drain(Instant::now() + Duration::from_millis(20)).await);
    }
}
