//! An upstream's families on `/metrics`, read at scrape time from its targets' own counters:
//! each sample labelled `module` (the upstream), and `target` where it is a target's.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use prometheus::proto::MetricFamily;

use super::UpstreamPool;
use super::target::Outcome;
use crate::metrics::{Family, ScrapeFn};

/// The scrape function of `pool`'s families; nothing once the pool is gone.
pub(super) fn scrape(pool: &Arc<UpstreamPool>) -> ScrapeFn {
    let pool: Weak<UpstreamPool> = Arc::downgrade(pool);
    Arc::new(move |owner| match pool.upgrade() {
        Some(pool) => families(&pool, (owner.0, owner.1.as_str())),
        None => Vec::new(),
    })
}

fn families(pool: &UpstreamPool, owner: (&str, &str)) -> Vec<MetricFamily> {
    let now = pool.now_ms();
    let mut requests = Family::counter(
        "swapvisor_upstream_requests_total",
        "Requests sent to an upstream target, by outcome (ok, server_error, connect_failed, failed).",
    );
    let mut healthy = Family::gauge(
        "swapvisor_upstream_target_healthy",
        "1 while an upstream target gets requests (healthy and not ejected), else 0.",
    );
    let mut in_flight = Family::gauge(
        "swapvisor_upstream_in_flight",
        "Requests in flight on an upstream target.",
    );
    for target in &pool.targets {
        let labels = [owner, ("target", target.address.as_str())];
        for outcome in Outcome::ALL {
            let mut with_outcome = labels.to_vec();
            with_outcome.push(("outcome", outcome.label()));
            requests.push(&with_outcome, target.count(outcome) as f64);
        }
        healthy.push(&labels, if target.usable(now) { 1.0 } else { 0.0 });
        in_flight.push(&labels, target.in_flight.load(Ordering::Relaxed) as f64);
    }
    let tunnels = &pool.tunnels;
    vec![
        requests.build(),
        healthy.build(),
        in_flight.build(),
        Family::counter(
            "swapvisor_upstream_retries_total",
            "Requests an upstream sent again after a failed attempt.",
        )
        .sample(&[owner], pool.retries.load(Ordering::Relaxed) as f64)
        .build(),
        Family::gauge(
            "swapvisor_upstream_tunnels_open",
            "Upgraded connections (WebSockets) open through an upstream.",
        )
        .sample(&[owner], tunnels.open.load(Ordering::Relaxed) as f64)
        .build(),
        Family::counter(
            "swapvisor_upstream_tunnels_closed_by_reload_total",
            "Tunnels closed because a reload changed their route or stopped their upstream.",
        )
        .sample(
            &[owner],
            tunnels.closed_by_reload.load(Ordering::Relaxed) as f64,
        )
        .build(),
    ]
}
