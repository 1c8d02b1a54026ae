//! `step.rate_limit {key, rate, burst, maxKeys}`: a token bucket (GCRA, the `governor` crate)
//! per rendered `key`. A request over the limit is answered 429 with `Retry-After`, and the
//! pipeline stops there.
//!
//! Engines are rebuilt on every reload, but the buckets are not reset by one: the factory keeps
//! a weak map from (pipeline, step, settings) to the limiter, so a step rebuilt with the same
//! settings gets the limiter the running engine uses, and a step whose settings changed gets a
//! fresh one. A limiter lives as long as an engine uses it; the map only holds weak entries,
//! and dead ones are dropped at every build.
//!
//! Keys are stored as their SHA-256 (32 bytes, whatever the header held), and their number is
//! bounded: past `maxKeys`, keys whose bucket is full again are forgotten (at most one sweep a
//! second); if the live keys alone are still past it, every bucket is reset, with a warning.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::template::Template;
use crate::extension::{Step, StepBuild, StepContext, StepError, StepFactory};

/// The default bound on the keys one limiter tracks.
const DEFAULT_MAX_KEYS: usize = 100_000;
/// The shortest time between two sweeps of a limiter's keys.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Builds `step.rate_limit` steps, and keeps their limiters across engines.
#[derive(Default)]
pub(super) struct RateLimitFactory {
    /// (pipeline, step, settings fingerprint) -> the limiter a live step uses.
    limiters: Mutex<HashMap<(String, String, String), Weak<Limiter>>>,
}

/// One step's buckets, shared by every engine whose step has the same settings.
struct Limiter {
    quota: Quota,
    max_keys: usize,
    buckets: ArcSwap<DefaultKeyedRateLimiter<[u8; 32]>>,
    sweep_interval: Duration,
    last_sweep: Mutex<Instant>,
}

impl Limiter {
    fn new(quota: Quota, max_keys: usize, sweep_interval: Duration) -> Self {
        Self {
            quota,
            max_keys,
            buckets: ArcSwap::from_pointee(DefaultKeyedRateLimiter::keyed(quota)),
            sweep_interval,
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long until one is there.
    fn check(&self, key: &str) -> Result<(), Duration> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let buckets = self.buckets.load();
        let outcome = buckets
            .check_key(&digest)
            .map_err(|not_until| not_until.wait_time_from(buckets.clock().now()));
        if buckets.len() > self.max_keys {
            self.sweep(&buckets);
        }
        outcome
    }

    /// Forgets the keys whose bucket is full again; resets every bucket if that is not enough.
    fn sweep(&self, buckets: &DefaultKeyedRateLimiter<[u8; 32]>) {
        // One sweep at a time, and not more often than the interval: a request never waits
        // for a sweep, and a flood of keys cannot make every request walk the whole map.
        let Ok(mut last) = self.last_sweep.try_lock() else {
            return;
        };
        if last.elapsed() < self.sweep_interval {
            return;
        }
        *last = Instant::now();
        buckets.retain_recent();
        buckets.shrink_to_fit();
        if buckets.len() > self.max_keys {
            tracing::warn!(
                keys = buckets.len(),
                max_keys = self.max_keys,
                "step.rate_limit tracks more live keys than maxKeys: every bucket is reset"
            );
            self.buckets
                .store(Arc::new(DefaultKeyedRateLimiter::keyed(self.quota)));
        }
    }
}

struct RateLimit {
    key: Template,
    limiter: Arc<Limiter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    #[serde(default)]
    key: String,
    rate: String,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    max_keys: Option<usize>,
}

/// `N/period`: `10/s`, `100/m`, `1000/h`, `1/d`, or a duration after the slash (`5/10s`).
fn parse_rate(text: &str) -> Result<(NonZeroU32, Duration), String> {
    let expected =
        "expected a count per period such as \"10/s\", \"100/m\", \"1000/h\" or \"5/10s\"";
    let Some((count, period)) = text.split_once('/') else {
        return Err(format!("invalid rate {text:?}; {expected}"));
    };
    let count = count.trim().parse::<NonZeroU32>().map_err(|_| {
        format!(
            "invalid count {:?} in rate {text:?}; {expected}",
            count.trim()
        )
    })?;
    let period = match period.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        other => parse_duration(other).map_err(|e| format!("{e} (in rate {text:?})"))?,
    };
    if period.is_zero() {
        return Err(format!("the period of rate {text:?} is zero; {expected}"));
    }
    Ok((count, period))
}

impl RateLimitFactory {
    /// The limiter of step `name` of `pipeline` with these settings: the live one if an engine
    /// uses it, else a fresh one.
    fn limiter(
        &self,
        pipeline: &str,
        name: &str,
        fingerprint: String,
        fresh: impl FnOnce() -> Limiter,
    ) -> Arc<Limiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        limiters.retain(|_, weak| weak.strong_count() > 0);
        let slot = limiters
            .entry((pipeline.to_owned(), name.to_owned(), fingerprint))
            .or_default();
        if let Some(live) = slot.upgrade() {
            return live;
        }
        let limiter = Arc::new(fresh());
        *slot = Arc::downgrade(&limiter);
        limiter
    }
}

impl StepFactory for RateLimitFactory {
    fn build(&self, build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
        let settings: Settings = build.settings()?;
        let mut errors = ConfigErrors::default();
        let rate = parse_rate(&settings.rate)
            .map_err(|message| errors.push(place::field(build.place, "rate"), message))
            .ok();
        let burst = match settings.burst {
            None => rate.map(|(count, _)| count),
            Some(burst) => {
                let burst = NonZeroU32::new(burst);
                if burst.is_none() {
                    errors.push(
                        place::field(build.place, "burst"),
                        "burst is 0; it is how many requests may come at once, at least 1",
                    );
                }
                burst
            }
        };
        let max_keys = settings.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            errors.push(
                place::field(build.place, "maxKeys"),
                "maxKeys is 0; it bounds how many keys are tracked, at least 1",
            );
        }
        let key = build
            .template("key", &Value::String(settings.key.clone()))
            .map_err(|e| errors.0.extend(e.0))
            .ok();
        let (Some((count, period)), Some(burst), Some(key), true) =
            (rate, burst, key, errors.is_empty())
        else {
            return Err(errors);
        };
        // One token every period/count, at most `burst` saved up.
        let Some(quota) = Quota::with_period(period / count.get()) else {
            return Err(ConfigError::new(
                place::field(build.place, "rate"),
                format!(
                    "rate {:?} is more than one request a nanosecond",
                    settings.rate
                ),
            )
            .into());
        };
        let quota = quota.allow_burst(burst);
        let fingerprint = format!(
            "{:?}|{:?}|{}|{max_keys}",
            settings.key,
            quota.replenish_interval(),
            burst
        );
        let limiter = self.limiter(build.pipeline, build.name, fingerprint, || {
            Limiter::new(quota, max_keys, SWEEP_INTERVAL)
        });
        Ok(Box::new(RateLimit { key, limiter }))
    }
}

impl Step for RateLimit {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let scope = context.scope();
        let key = self.key.render_string(&scope);
        // A key cut short by the run's render budget would share another key's bucket.
        let result = match scope.budget.check() {
            Err(exceeded) => Err(StepError::from(exceeded)),
            Ok(()) => match self.limiter.check(&key) {
                Ok(()) => Ok(json!({"allowed": true})),
                Err(wait) => {
                    // Whole seconds, rounded up: a client that waits that long finds a token.
                    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    let seconds = seconds.max(1);
                    tracing::debug!(
                        pipeline = context.pipeline,
                        step = context.step,
                        retry_after = seconds,
                        "request refused by step.rate_limit"
                    );
                    Err(StepError::respond(
                        429,
                        [("retry-after".to_owned(), seconds.to_string())],
                        json!({"error": "rate limit exceeded", "retryAfter": seconds}),
                    ))
                }
            },
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_a_count_per_period() {
        let rate = |t: &str| parse_rate(t).map(|(n, p)| (n.get(), p));
        assert_eq!(rate("10/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(rate("100 / m"), Ok((100, Duration::from_secs(60))));
        assert_eq!(rate("5/10s"), Ok((5, Duration::from_secs(10))));
        assert_eq!(rate("1/d"), Ok((1, Duration::from_secs(86_400))));
        for bad in ["10", "0/s", "x/s", "10/fortnight", "10/0s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_is_spent_then_refused_with_the_wait() {
        let quota = Quota::with_period(Duration::from_secs(60))
            .unwrap()
            .allow_burst(NonZeroU32::new(2).unwrap());
        let limiter = Limiter::new(quota, 10, Duration::ZERO);
        assert_eq!(limiter.check("a"), Ok(()));
        assert_eq!(limiter.check("a"), Ok(()));
        let wait = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert_eq!(limiter.check("b"), Ok(()));
    }

    #[test]
    fn keys_past_the_bound_are_swept_then_reset() {
        let quota = Quota::with_period(Duration::from_secs(60)).unwrap();
        let limiter = Limiter::new(quota, 3, Duration::ZERO);
        for key in ["a", "b", "c", "d"] {
            assert_eq!(limiter.check(key), Ok(()), "{key}");
        }
        // Four live keys passed the bound of three: every bucket was reset.
        assert!(limiter.buckets.load().len() <= 3);
        assert_eq!(limiter.check("a"), Ok(()), "a fresh bucket after the reset");
    }

    #[test]
    fn the_factory_shares_a_limiter_only_while_it_lives_and_its_settings_hold() {
        let factory = RateLimitFactory::default();
        let quota = Quota::with_period(Duration::from_secs(1)).unwrap();
        let fresh = || Limiter::new(quota, 10, SWEEP_INTERVAL);
        let first = factory.limiter("p", "s", "a".into(), fresh);
        let same = factory.limiter("p", "s", "a".into(), fresh);
        assert!(Arc::ptr_eq(&first, &same));
        let changed = factory.limiter("p", "s", "b".into(), fresh);
        assert!(!Arc::ptr_eq(&first, &changed));
        drop((first, same, changed));
        let after = factory.limiter("p", "s", "a".into(), fresh);
        assert_eq!(
            Arc::strong_count(&after),
            1,
            "a dropped limiter is not revived"
        );
        assert_eq!(
            factory.limiters.lock().unwrap().len(),
            1,
            "dead entries are pruned"
        );
    }
}
