//! Exponential backoff, with optional jitter: how long to wait before the next attempt.
//!
//! A degraded Supervisor waits this long between restores of its last-known-good spec, and a
//! runtime built on this crate waits this long before restarting a crashed child. Jitter
//! spreads out attempts of things that failed together, so that they do not retry in lockstep.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, each varied by up to `± jitter` of itself.
///
/// ```
/// use std::time::Duration;
/// use swapvisor_actors::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// let delays: Vec<u128> = (0..6).map(|n| backoff.delay(n).as_millis()).collect();
/// assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
///
/// let jittered = backoff.with_jitter(0.2).delay(1).as_millis();
/// assert!((160..=240).contains(&jittered));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// How much each delay may vary, as a fraction of it (0.2: ±20%); 0 for none.
    pub jitter: f64,
}

impl Backoff {
    /// Doubling from `initial`, capped at `max`, without jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: 0.0,
        }
    }

    /// The same delays, each varied by up to `± fraction` of itself (clamped to 0..=1).
    pub fn with_jitter(self, fraction: f64) -> Self {
        Self {
            jitter: fraction.clamp(0.0, 1.0),
            ..self
        }
    }

    /// The delay before attempt `attempt` (0-based): `initial * 2^attempt`, capped at `max`,
    /// then jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        let capped = self.initial.saturating_mul(factor).min(self.max);
        if self.jitter > 0.0 {
            capped.mul_f64(1.0 - self.jitter + 2.0 * self.jitter * fastrand::f64())
        } else {
            capped
        }
    }
}

/// 100 ms doubling to 30 s, without jitter: the restore backoff of a degraded Supervisor.
impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let backoff =
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.2);
        for (attempt, nominal) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let delay = backoff.delay(attempt - 1).as_millis() as u64;
            assert!(
                delay >= nominal * 8 / 10 && delay <= nominal * 12 / 10,
                "attempt {attempt}: {delay}ms"
            );
        }
    }
}
