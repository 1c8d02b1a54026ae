//! Every gate of the process, and their counters as `/metrics` shows them.
//!
//! Gates register themselves here when they are made and drop out when their listener is
//! gone; [`ListenerCollector`] reads the live ones at scrape time, labelled `listener` (the
//! address) then `kind` (`http.server` or `admin`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use super::gate::{Gate, lock};
use super::request_body::BODY_TIMEOUTS;
use crate::metrics::Family;

/// Every gate of the process, for `/metrics`.
pub(super) fn gates() -> &'static Mutex<Vec<Weak<Gate>>> {
    static GATES: OnceLock<Mutex<Vec<Weak<Gate>>>> = OnceLock::new();
    GATES.get_or_init(Mutex::default)
}

/// What a listener family counts: its name, whether it is a counter, its help, and its value
/// for one gate.
type Reading = (&'static str, bool, &'static str, fn(&Gate) -> u64);

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The listener families, in the order of their samples.
const LISTENER_FAMILIES: [Reading; 7] = [
    (
        "swapvisor_listener_connections",
        false,
        "Connections open on each listener.",
        |g| lock(&g.open).len() as u64,
    ),
    (
        "swapvisor_listener_max_connections",
        false,
        "Each listener's connection cap.",
        |g| g.limits.load().max_connections as u64,
    ),
    (
        "swapvisor_listener_accepted_total",
        true,
        "Connections each listener accepted.",
        |g| get(&g.counters.accepted),
    ),
    (
        "swapvisor_listener_at_cap_total",
        true,
        "Times each listener reached its connection cap (or the process budget).",
        |g| get(&g.counters.at_cap),
    ),
    (
        "swapvisor_listener_evicted_total",
        true,
        "Connections closed at the cap because they had not sent a whole request head.",
        |g| get(&g.counters.evicted),
    ),
    (
        "swapvisor_listener_refused_total",
        true,
        "Connections closed at once because the listener was at its cap with every connection busy.",
        |g| get(&g.counters.refused),
    ),
    (
        "swapvisor_listener_probe_reserve_total",
        true,
        "Connections admitted past the cap, every ordinary connection being busy, to answer one health probe.",
        |g| get(&g.counters.probe_reserve),
    ),
];

const TIMEOUTS: (&str, &str) = (
    "swapvisor_listener_timeouts_total",
    "Connections closed by their header read or idle timeout.",
);

const BODY: (&str, &str) = (
    "swapvisor_request_body_timeouts_total",
    "Requests whose body was not received within its read timeout (answered 408).",
);

/// The listener metrics of every server of the process, and the request bodies past their
/// deadline, read at scrape time.
pub(crate) struct ListenerCollector {
    descs: Vec<Desc>,
}

impl Default for ListenerCollector {
    fn default() -> Self {
        let names = LISTENER_FAMILIES
            .iter()
            .map(|(name, _, help, _)| (*name, *help))
            .chain([TIMEOUTS, BODY]);
        let descs = names
            .filter_map(|(name, help)| {
                Desc::new(name.to_owned(), help.to_owned(), Vec::new(), HashMap::new()).ok()
            })
            .collect();
        Self { descs }
    }
}

impl Collector for ListenerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let live: Vec<_> = lock(gates()).iter().filter_map(Weak::upgrade).collect();
        let mut families: Vec<MetricFamily> = LISTENER_FAMILIES
            .iter()
            .map(|(name, counter, help, read)| {
                let mut family = if *counter {
                    Family::counter(name, help)
                } else {
                    Family::gauge(name, help)
                };
                for gate in &live {
                    let labels = [("listener", gate.label.as_str()), ("kind", gate.kind)];
                    family.push(&labels, read(gate) as f64);
                }
                family.build()
            })
            .collect();
        let mut timeouts = Family::counter(TIMEOUTS.0, TIMEOUTS.1);
        for gate in &live {
            for (timeout, count) in [
                ("header", &gate.counters.header_timeouts),
                ("idle", &gate.counters.idle_timeouts),
            ] {
                let labels = [
                    ("listener", gate.label.as_str()),
                    ("kind", gate.kind),
                    ("timeout", timeout),
                ];
                timeouts.push(&labels, get(count) as f64);
            }
        }
        families.push(timeouts.build());
        families.push(
            Family::counter(BODY.0, BODY.1)
                .sample(&[], get(&BODY_TIMEOUTS) as f64)
                .build(),
        );
        families
    }
}
