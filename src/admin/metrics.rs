//! Prometheus metrics for reloads, in the text exposition format.
//!
//! [`Metrics`] observes every engine reload outcome (give it to
//! [`RuntimeBuilder::observer`](crate::RuntimeBuilder::observer)) and renders, together with values read at scrape time from the runtime's
//! status:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `swapvisor_build_info{version}` | gauge | 1, labelled with the running version |
//! | `swapvisor_reloads_total{outcome}` | counter | reloads by outcome (every outcome name, zeros included) |
//! | `swapvisor_generation` | gauge | the live config's generation |
//! | `swapvisor_config_last_reload_successful` | gauge | 1 if the last reload attempt activated, else 0 |
//! | `swapvisor_reload_duration_seconds` | histogram | request-to-outcome time of reloads that ran |
//! | `swapvisor_plugin_restarts_total{plugin}` | counter | crash restarts of each plugin instance |
//! | `swapvisor_plugin_escalations_total{plugin}` | counter | crash loops of each plugin instance past its restart intensity, on probation or not |
//! | `swapvisor_plugin_up{plugin}` | gauge | 1 while the plugin instance serves calls (`running`), 0 while it is starting, restarting, failed or stopped |
//! | `swapvisor_plugin_state{plugin,state}` | gauge | 1 for the instance's current state, 0 for the others (every state listed: `starting`, `running`, `restarting`, `failed`, `stopped`) |
//! | `swapvisor_plugin_reloads_total{plugin,outcome}` | counter | reloads of each plugin instance by outcome, its first activation included |
//! | `swapvisor_plugin_checkpoints_total{plugin}` | counter | checkpoints each plugin instance took that were kept (since the process started) |
//! | `swapvisor_plugin_checkpoints_refused_total{plugin}` | counter | checkpoints refused (too large, from a replaced instance, not written to disk) and imports its `migrate` refused |
//! | `swapvisor_plugin_code_refused_total` | counter | starts refused because a stored plugin executable failed its check (hash, owner, mode, link) |
//! | `swapvisor_inflight_requests` | gauge | requests running on the live engine |
//! | `swapvisor_engines_retired_total` | counter | replaced engines that finished retiring |
//! | `swapvisor_retire_failures_total{stage}` | counter | retirements whose `drain` passed its deadline with work in flight, or whose `stop` failed |
//!
//! | `swapvisor_http_requests_total{pipeline,status_class}` | counter | HTTP requests each pipeline answered, by `1xx` ... `5xx` |
//! | `swapvisor_http_request_duration_seconds{pipeline}` | histogram | time from routing a request to its response |
//! | `swapvisor_listener_connections{listener,kind}` | gauge | connections open on each listener (`kind`: `http.server` or `admin`) |
//! | `swapvisor_listener_max_connections{listener,kind}` | gauge | each listener's connection cap |
//! | `swapvisor_listener_accepted_total{listener,kind}` | counter | connections accepted |
//! | `swapvisor_listener_at_cap_total{listener,kind}` | counter | times the listener reached its cap (or the process's connection budget) |
//! | `swapvisor_listener_evicted_total{listener,kind}` | counter | connections closed at the cap because they had not sent a whole request head |
//! | `swapvisor_listener_refused_total{listener,kind}` | counter | connections closed at once: at the cap with every connection busy |
//! | `swapvisor_listener_timeouts_total{listener,kind,timeout}` | counter | connections closed by their `header` or `idle` timeout |
//! | `swapvisor_request_body_timeouts_total` | counter | requests whose body did not arrive within its read timeout (408) |
//! | `swapvisor_listener_probe_reserve_total{listener,kind}` | counter | admin connections taken on the probe reserve (only `/healthz` and `/readyz` answered) |
//!
//! The values counted here and those read from status are added, per scrape, to the runtime's
//! metrics registry (`crate::metrics`), which encodes everything in one exposition. Besides
//! the families above, `/metrics` shows what modules and plugins register through their
//! [`MetricsHandle`](crate::extension::metrics::MetricsHandle).

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
use swapvisor_actors::{ReloadObserver, ReloadOutcome, ReloadRecord, RetirementStatus};

use crate::metrics::Family;
use crate::plugin::{PluginState, PluginStatus};
use crate::runtime::{Runtime, RuntimeStatus};

/// Upper bounds of the reload duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Reload counters and the duration histogram. Shared by the Supervisor (which records) and the
/// admin API (which renders).
#[derive(Debug)]
pub struct Metrics {
    reloads: IntCounterVec,
    /// The counter of each outcome, in [`ReloadOutcome::NAMES`] order.
    by_outcome: Vec<IntCounter>,
    /// 1 if the last reload attempt activated, else 0.
    last_successful: IntGauge,
    durations: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        // The names and buckets are constants, so these cannot fail.
        let reloads = IntCounterVec::new(
            Opts::new("swapvisor_reloads_total", "Engine reloads by outcome."),
            &["outcome"],
        )
        .expect("a valid counter family");
        let by_outcome = ReloadOutcome::NAMES
            .iter()
            .map(|name| reloads.with_label_values(&[*name]))
            .collect();
        let last_successful = IntGauge::new(
            "swapvisor_config_last_reload_successful",
            "Whether the last reload attempt activated (1) or not (0).",
        )
        .expect("a valid gauge");
        let durations = Histogram::with_opts(
            HistogramOpts::new(
                "swapvisor_reload_duration_seconds",
                "Time from a reload request to its outcome.",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("a valid histogram");
        Self {
            reloads,
            by_outcome,
            last_successful,
            durations,
        }
    }
}

impl ReloadObserver for Metrics {
    fn reload_finished(&self, record: &ReloadRecord) {
        let name = record.outcome.name();
        if let Some(i) = ReloadOutcome::NAMES.iter().position(|n| *n == name) {
            self.by_outcome[i].inc();
        }
        let attempted = match &record.outcome {
            ReloadOutcome::Activated { .. }
            | ReloadOutcome::Reverted { .. }
            | ReloadOutcome::Restored { .. } => Some(1),
            ReloadOutcome::Rejected { .. }
            | ReloadOutcome::RolledBack { .. }
            | ReloadOutcome::Degraded { .. } => Some(0),
            // The config asked for is the live one.
            ReloadOutcome::Unchanged { .. } => Some(1),
            // Never started: not a reload attempt.
            ReloadOutcome::Superseded | ReloadOutcome::Conflict { .. } => None,
        };
        if let Some(successful) = attempted {
            self.last_successful.set(successful);
            if let Some(total) = record.timings.total {
                self.durations.observe(total.as_secs_f64());
            }
        }
    }
}

impl Metrics {
    /// How many reloads ended with the outcome named `outcome`.
    pub fn reloads(&self, outcome: &str) -> u64 {
        ReloadOutcome::NAMES
            .iter()
            .position(|n| *n == outcome)
            .map_or(0, |i| self.by_outcome[i].get())
    }

    /// The text exposition of every metric of `runtime`, with these reload metrics and the
    /// values of `status` (read for this scrape).
    pub fn render(&self, status: &RuntimeStatus, runtime: &Runtime) -> String {
        let mut families = self.reloads.collect();
        families.extend(self.last_successful.collect());
        families.extend(self.durations.collect());
        families.extend(status_families(
            status.generation,
            status.in_flight,
            &status.plugins,
            &status.retirements,
        ));
        runtime.metrics_registry().render(families)
    }
}

/// The families read from the runtime's status: its generation, requests in flight, plugins
/// and retirements.
fn status_families(
    generation: u64,
    in_flight: usize,
    plugins: &[PluginStatus],
    retirements: &RetirementStatus,
) -> Vec<MetricFamily> {
    let mut restarts = Family::counter(
        "swapvisor_plugin_restarts_total",
        "Crash restarts of each plugin instance.",
    );
    for plugin in plugins {
        restarts.push(&[("plugin", &plugin.name)], plugin.restarts as f64);
    }
    let mut escalations = Family::counter(
        "swapvisor_plugin_escalations_total",
        "Crash loops of each plugin instance past its restart intensity (escalated).",
    );
    for plugin in plugins {
        escalations.push(&[("plugin", &plugin.name)], plugin.escalations as f64);
    }
    let mut up = Family::gauge(
        "swapvisor_plugin_up",
        "Whether each plugin instance serves calls (1) or is starting, restarting, failed or stopped (0).",
    );
    let mut states = Family::gauge(
        "swapvisor_plugin_state",
        "Each plugin instance's state: 1 for the current one, 0 for the others.",
    );
    let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
    for plugin in plugins {
        up.push(
            &[("plugin", &plugin.name)],
            flag(plugin.state == PluginState::Running),
        );
        for state in PluginState::ALL {
            states.push(
                &[("plugin", &plugin.name), ("state", state.name())],
                flag(plugin.state == state),
            );
        }
    }
    let mut reloads = Family::counter(
        "swapvisor_plugin_reloads_total",
        "Reloads of each plugin instance, by outcome (its first activation included).",
    );
    for plugin in plugins {
        for (outcome, count) in &plugin.reloads {
            reloads.push(
                &[("plugin", &plugin.name), ("outcome", outcome)],
                *count as f64,
            );
        }
    }
    let mut checkpoints = Family::counter(
        "swapvisor_plugin_checkpoints_total",
        "Checkpoints each plugin instance took that were kept.",
    );
    let mut refused = Family::counter(
        "swapvisor_plugin_checkpoints_refused_total",
        "Checkpoints refused (too large, stale or not written) and checkpoint imports refused.",
    );
    for plugin in plugins {
        if let Some(checkpoint) = &plugin.checkpoint {
            checkpoints.push(&[("plugin", &plugin.name)], checkpoint.taken as f64);
            refused.push(&[("plugin", &plugin.name)], checkpoint.refused as f64);
        }
    }
    let mut failures = Family::counter(
        "swapvisor_retire_failures_total",
        "Retirements of replaced engines that failed, by stage.",
    );
    for (stage, count) in [
        ("drain", retirements.drain_overruns),
        ("stop", retirements.stop_failures),
    ] {
        failures.push(&[("stage", stage)], count as f64);
    }
    vec![
        Family::gauge(
            "swapvisor_build_info",
            "The running swapvisor's version; always 1.",
        )
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)
        .build(),
        Family::gauge("swapvisor_generation", "The live config's generation.")
            .sample(&[], generation as f64)
            .build(),
        restarts.build(),
        escalations.build(),
        up.build(),
        states.build(),
        reloads.build(),
        checkpoints.build(),
        refused.build(),
        Family::counter(
            "swapvisor_plugin_code_refused_total",
            "Plugin starts refused because a stored executable failed its check.",
        )
        .sample(&[], crate::builtin::code_refused() as f64)
        .build(),
        Family::gauge(
            "swapvisor_inflight_requests",
            "Requests running on the live engine.",
        )
        .sample(&[], in_flight as f64)
        .build(),
        Family::counter(
            "swapvisor_engines_retired_total",
            "Replaced engines that finished retiring.",
        )
        .sample(&[], retirements.retired as f64)
        .build(),
        failures.build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_added_per_scrape_is_reserved_from_extensions() {
        let metrics = Metrics::default();
        let mut names: Vec<String> = [
            metrics.reloads.collect(),
            metrics.last_successful.collect(),
            metrics.durations.collect(),
            status_families(0, 0, &[], &RetirementStatus::default()),
        ]
        .concat()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
        names.sort();
        let mut reserved: Vec<String> = crate::metrics::SCRAPED
            .iter()
            .map(|n| n.to_string())
            .collect();
        reserved.sort();
        assert_eq!(names, reserved);
    }
}
