//! Every gate of the process, and their counters as `/metrics` shows them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::gate::{Gate, lock};
use super::request_body::BODY_TIMEOUTS;

/// Every gate of the process, for `/metrics`.
pub(super) fn gates() -> &'static Mutex<Vec<Weak<Gate>>> {
    static GATES: OnceLock<Mutex<Vec<Weak<Gate>>>> = OnceLock::new();
    GATES.get_or_init(Mutex::default)
}

impl Gate {
    #[cfg(feature = "admin")]
    fn write_prometheus(&self, out: &mut String) -> std::fmt::Result {
        use std::fmt::Write as _;
        let labels = format!("listener=\"{}\",kind=\"{}\"", self.label, self.kind);
        let c = &self.counters;
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        writeln!(
            out,
            "swapvisor_listener_connections{{{labels}}} {}",
            lock(&self.open).len()
        )?;
        writeln!(
            out,
            "swapvisor_listener_max_connections{{{labels}}} {}",
            self.limits.load().max_connections
        )?;
        writeln!(
            out,
            "swapvisor_listener_accepted_total{{{labels}}} {}",
            get(&c.accepted)
        )?;
        writeln!(
            out,
            "swapvisor_listener_at_cap_total{{{labels}}} {}",
            get(&c.at_cap)
        )?;
        writeln!(
            out,
            "swapvisor_listener_evicted_total{{{labels}}} {}",
            get(&c.evicted)
        )?;
        writeln!(
            out,
            "swapvisor_listener_refused_total{{{labels}}} {}",
            get(&c.refused)
        )?;
        if !self.probes.is_empty() {
            writeln!(
                out,
                "swapvisor_listener_probe_reserve_total{{{labels}}} {}",
                get(&c.probe_reserve)
            )?;
        }
        writeln!(
            out,
            "swapvisor_listener_timeouts_total{{{labels},timeout=\"header\"}} {}",
            get(&c.header_timeouts)
        )?;
        writeln!(
            out,
            "swapvisor_listener_timeouts_total{{{labels},timeout=\"idle\"}} {}",
            get(&c.idle_timeouts)
        )
    }
}

/// The listener metrics of every server of the process, in the Prometheus text format.
#[cfg(feature = "admin")]
pub(crate) fn write_prometheus(out: &mut String) -> std::fmt::Result {
    use std::fmt::Write as _;
    let live: Vec<Arc<Gate>> = lock(gates()).iter().filter_map(Weak::upgrade).collect();
    let families = [
        (
            "swapvisor_listener_connections",
            "gauge",
            "Connections open on each listener.",
        ),
        (
            "swapvisor_listener_max_connections",
            "gauge",
            "Each listener's connection cap.",
        ),
        (
            "swapvisor_listener_accepted_total",
            "counter",
            "Connections each listener accepted.",
        ),
        (
            "swapvisor_listener_at_cap_total",
            "counter",
            "Times each listener reached its connection cap (or the process budget).",
        ),
        (
            "swapvisor_listener_evicted_total",
            "counter",
            "Connections closed at the cap because they had not sent a whole request head.",
        ),
        (
            "swapvisor_listener_refused_total",
            "counter",
            "Connections closed at once because the listener was at its cap with every connection busy.",
        ),
        (
            "swapvisor_listener_probe_reserve_total",
            "counter",
            "Connections admitted past the cap, every ordinary connection being busy, to answer one health probe.",
        ),
        (
            "swapvisor_listener_timeouts_total",
            "counter",
            "Connections closed by their header read or idle timeout.",
        ),
    ];
    for (name, kind, help) in families {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")?;
    }
    for gate in &live {
        gate.write_prometheus(out)?;
    }
    writeln!(
        out,
        "# HELP swapvisor_request_body_timeouts_total Requests whose body was not received within its read timeout (answered 408)."
    )?;
    writeln!(out, "# TYPE swapvisor_request_body_timeouts_total counter")?;
    writeln!(
        out,
        "swapvisor_request_body_timeouts_total {}",
        BODY_TIMEOUTS.load(Ordering::Relaxed)
    )
}
