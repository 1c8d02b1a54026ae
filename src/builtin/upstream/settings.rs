//! `http.upstream`'s settings, checked with their places.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigErrors, parse_duration, place};

/// How a request's target is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Balance {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight.
    LeastRequests,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Raw {
    targets: Vec<String>,
    #[serde(default)]
    balance: Balance,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_idle_per_target: Option<usize>,
    health_check: Option<RawHealth>,
    passive: Option<RawPassive>,
    retries: Option<RawRetries>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHealth {
    path: String,
    interval: Option<String>,
    timeout: Option<String>,
    unhealthy_after: Option<u32>,
    healthy_after: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPassive {
    failures: Option<u32>,
    eject_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRetries {
    attempts: Option<u32>,
    budget_percent: Option<u32>,
    min_concurrent: Option<u32>,
}

/// Active health checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthCheck {
    pub(crate) path: String,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) unhealthy_after: u32,
    pub(crate) healthy_after: u32,
}

/// Ejection by the traffic: after `failures` consecutive connect failures or 5xx answers, a
/// target gets no requests for `eject_for_ms` (0 failures: never).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Passive {
    pub(crate) failures: u32,
    pub(crate) eject_for_ms: u64,
}

/// When a failed request is tried again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Retries {
    /// Attempts in all, the first included (1: no retries).
    pub(crate) attempts: u32,
    pub(crate) budget_percent: u32,
    pub(crate) min_concurrent: u32,
}

/// The checked settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) targets: Vec<String>,
    pub(crate) balance: Balance,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle_per_target: usize,
    pub(crate) health_check: Option<HealthCheck>,
    pub(crate) passive: Passive,
    pub(crate) retries: Retries,
}

/// Reads a duration setting at `at`, or its default.
fn duration(
    text: Option<&String>,
    default: Duration,
    at: &str,
    errors: &mut ConfigErrors,
) -> Duration {
    match text.map(|t| parse_duration(t)) {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            errors.push(at, "must be longer than 0");
            default
        }
        Some(Err(message)) => {
            errors.push(at, message);
            default
        }
    }
}

/// Whether `target` is `host:port`, with a port and nothing else.
fn check_target(target: &str) -> Result<(), String> {
    let valid = "a target is host:port, such as \"127.0.0.1:8080\" or \"api.internal:80\"";
    let authority: hyper::http::uri::Authority = target
        .parse()
        .map_err(|_| format!("{target:?} is not host:port; {valid}"))?;
    if authority.port_u16().is_none() || authority.as_str().contains('@') {
        return Err(format!("{target:?} has no port; {valid}"));
    }
    Ok(())
}

impl Settings {
    /// The settings of a pool of the one target `authority`, with every default and no
    /// ejection.
    pub(super) fn single(authority: String) -> Self {
        Self {
            targets: vec![authority],
            balance: Balance::RoundRobin,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_target: 32,
            health_check: None,
            passive: Passive {
                failures: 0,
                eject_for_ms: 0,
            },
            retries: Retries {
                attempts: 2,
                budget_percent: 20,
                min_concurrent: 3,
            },
        }
    }

    /// Checks `raw`, the settings at `at`.
    pub(super) fn check(raw: Raw, at: &str) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let targets_at = place::field(at, "targets");
        if raw.targets.is_empty() {
            errors.push(
                &targets_at,
                "an upstream needs at least one target (host:port)",
            );
        }
        for (i, target) in raw.targets.iter().enumerate() {
            if let Err(message) = check_target(target) {
                errors.push(place::index(&targets_at, i), message);
            }
            if raw.targets[..i].contains(target) {
                errors.push(
                    place::index(&targets_at, i),
                    format!("{target:?} is listed twice"),
                );
            }
        }
        let field = |name: &str| place::field(at, name);
        let connect_timeout = duration(
            raw.connect_timeout.as_ref(),
            Duration::from_secs(2),
            &field("connectTimeout"),
            &mut errors,
        );
        let request_timeout = duration(
            raw.request_timeout.as_ref(),
            Duration::from_secs(30),
            &field("requestTimeout"),
            &mut errors,
        );
        let idle_timeout = duration(
            raw.idle_timeout.as_ref(),
            Duration::from_secs(90),
            &field("idleTimeout"),
            &mut errors,
        );
        let health_check = raw.health_check.map(|h| {
            let at = field("healthCheck");
            if !h.path.starts_with('/') {
                errors.push(
                    place::field(&at, "path"),
                    format!("{:?} must start with /", h.path),
                );
            }
            let mut count = |value: Option<u32>, name: &str| match value {
                Some(0) => {
                    errors.push(place::field(&at, name), "must be at least 1");
                    1
                }
                other => other.unwrap_or(2),
            };
            let unhealthy_after = count(h.unhealthy_after, "unhealthyAfter");
            let healthy_after = count(h.healthy_after, "healthyAfter");
            HealthCheck {
                interval: duration(
                    h.interval.as_ref(),
                    Duration::from_secs(5),
                    &place::field(&at, "interval"),
                    &mut errors,
                ),
                timeout: duration(
                    h.timeout.as_ref(),
                    Duration::from_secs(1),
                    &place::field(&at, "timeout"),
                    &mut errors,
                ),
                path: h.path,
                unhealthy_after,
                healthy_after,
            }
        });
        let passive = raw.passive.map_or(
            Passive {
                failures: 5,
                eject_for_ms: 30_000,
            },
            |p| Passive {
                failures: p.failures.unwrap_or(5),
                eject_for_ms: duration(
                    p.eject_for.as_ref(),
                    Duration::from_secs(30),
                    &place::field(&field("passive"), "ejectFor"),
                    &mut errors,
                )
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            },
        );
        let retries = match raw.retries {
            None => Retries {
                attempts: 2,
                budget_percent: 20,
                min_concurrent: 3,
            },
            Some(r) => {
                let at = field("retries");
                let attempts = r.attempts.unwrap_or(2);
                if !(1..=10).contains(&attempts) {
                    errors.push(
                        place::field(&at, "attempts"),
                        format!("{attempts} is out of range: attempts in all, the first included, from 1 (no retries) to 10"),
                    );
                }
                let budget_percent = r.budget_percent.unwrap_or(20);
                if budget_percent > 100 {
                    errors.push(
                        place::field(&at, "budgetPercent"),
                        format!("{budget_percent} is over 100"),
                    );
                }
                Retries {
                    attempts: attempts.clamp(1, 10),
                    budget_percent: budget_percent.min(100),
                    min_concurrent: r.min_concurrent.unwrap_or(3),
                }
            }
        };
        let settings = Settings {
            targets: raw.targets,
            balance: raw.balance,
            connect_timeout,
            request_timeout,
            idle_timeout,
            max_idle_per_target: raw.max_idle_per_target.unwrap_or(32),
            health_check,
            passive,
            retries,
        };
        errors.into_result(settings)
    }
}
