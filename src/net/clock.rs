//! A connection's clock: its phase and since when, in one atomic word.
//!
//! Each connection is in one phase: *head* (from accept, or from the first byte of a
//! kept-alive connection's next request, until the head is parsed), *busy* (a request is being
//! answered), or *idle* (after a response, until the next request's first byte); or *evicted*,
//! closed by its gate to make room. The phase takes the low two bits of the word and the time it
//! began (milliseconds since the gate's origin) the rest, so the connection's own reads and
//! requests update it with one store and the watchdog and the gate read it without a lock:
//! nothing is shared between connections on the request path.

use std::sync::atomic::{AtomicU64, Ordering};

/// A connection's phase and since when (milliseconds since its gate's origin), in one word.
#[derive(Debug)]
pub(super) struct Clock(AtomicU64);

pub(super) const HEAD: u64 = 0;
pub(super) const BUSY: u64 = 1;
pub(super) const IDLE: u64 = 2;
pub(super) const EVICTED: u64 = 3;
/// The phases of a connection waiting for a request head: what the gate may evict.
pub(super) const WAITING: &[u64] = &[HEAD, IDLE];
const PHASE_BITS: u64 = 2;
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;

impl Clock {
    pub(super) fn new(now_ms: u64) -> Self {
        Self(AtomicU64::new(pack(HEAD, now_ms)))
    }

    pub(super) fn read(&self) -> (u64, u64) {
        let word = self.0.load(Ordering::Relaxed);
        (word & PHASE_MASK, word >> PHASE_BITS)
    }

    /// Moves from one of the phases `from` to `to` at `now_ms`; false if the phase was none
    /// of them (an evicted connection stays evicted).
    pub(super) fn shift(&self, from: &[u64], to: u64, now_ms: u64) -> bool {
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
    pub(super) fn waiting_since(&self) -> Option<u64> {
        let (phase, since) = self.read();
        WAITING.contains(&phase).then_some(since)
    }
}

/// The latest time a clock holds: what is left of the word after the phase bits. A gate's
/// `now_ms` saturates here.
pub(super) const MAX_MS: u64 = u64::MAX >> PHASE_BITS;

fn pack(phase: u64, since_ms: u64) -> u64 {
    (since_ms << PHASE_BITS) | phase
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_and_time_round_trip_through_the_word() {
        for phase in [HEAD, BUSY, IDLE, EVICTED] {
            for since in [0, 1, 2, 3, 4, 1_000, 1 << 40, MAX_MS - 1, MAX_MS] {
                let clock = Clock::new(0);
                assert!(clock.shift(&[HEAD], phase, since));
                assert_eq!(clock.read(), (phase, since), "phase {phase}, since {since}");
            }
        }
    }

    #[test]
    fn a_time_does_not_spill_into_the_phase() {
        // Times whose low bits are set must not read as another phase.
        let clock = Clock::new(0b11);
        assert_eq!(clock.read(), (HEAD, 0b11));
        assert_eq!(clock.waiting_since(), Some(0b11));
    }

    #[test]
    fn a_shift_from_another_phase_changes_nothing() {
        let clock = Clock::new(10);
        assert!(!clock.shift(&[BUSY], IDLE, 20));
        assert_eq!(clock.read(), (HEAD, 10));
        assert!(clock.shift(WAITING, BUSY, 30));
        assert_eq!(clock.read(), (BUSY, 30));
        assert_eq!(clock.waiting_since(), None);
        assert!(clock.shift(&[BUSY], IDLE, 40));
        assert_eq!(clock.waiting_since(), Some(40));
    }

    #[test]
    fn an_evicted_connection_stays_evicted() {
        let clock = Clock::new(5);
        assert!(clock.shift(WAITING, EVICTED, 6));
        for to in [HEAD, BUSY, IDLE] {
            assert!(!clock.shift(WAITING, to, 7));
            assert!(!clock.shift(&[BUSY], to, 7));
        }
        assert_eq!(clock.read(), (EVICTED, 6));
        assert_eq!(clock.waiting_since(), None);
    }
}
