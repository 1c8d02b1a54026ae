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
//! The format is a handful of lines per metric, so it is written here directly rather than
//! through a metrics registry: every value is either counted here or read from status.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use swapvisor_actors::{ReloadObserver, ReloadOutcome, ReloadRecord};

use crate::engine::RequestMetrics;
use crate::engine::requests_label as label;
use crate::runtime::RuntimeStatus;

/// Upper bounds of the reload duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Reload counters and the duration histogram. Shared by the Supervisor (which records) and the
/// admin API (which renders).
#[derive(Debug)]
pub struct Metrics {
    by_outcome: [AtomicU64; ReloadOutcome::NAMES.len()],
    /// 1, 0, or -1 before any reload attempt.
    last_successful: AtomicI64,
    histogram: Mutex<Histogram>,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            by_outcome: Default::default(),
            last_successful: AtomicI64::new(-1),
            histogram: Mutex::default(),
        }
    }
}

impl ReloadObserver for Metrics {
    fn reload_finished(&self, record: &ReloadRecord) {
        let name = record.outcome.name();
        if let Some(i) = ReloadOutcome::NAMES.iter().position(|n| *n == name) {
            self.by_outcome[i].fetch_add(1, Ordering::Relaxed);
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
            self.last_successful.store(successful, Ordering::Relaxed);
            if let Some(total) = record.timings.total {
                let seconds = total.as_secs_f64();
                let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
                histogram.count += 1;
                histogram.sum += seconds;
                for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
                    if seconds <= bound {
                        *bucket += 1;
                    }
                }
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
            .map_or(0, |i| self.by_outcome[i].load(Ordering::Relaxed))
    }

    /// The text exposition of every metric, with `status` for the values read at scrape time.
    pub fn render(&self, status: &RuntimeStatus, requests: &RequestMetrics) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = self.write(&mut out, status);
        let _ = requests.write_prometheus(&mut out);
        let _ = crate::net::write_prometheus(&mut out);
        out
    }

    fn write(&self, out: &mut String, status: &RuntimeStatus) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP swapvisor_build_info The running swapvisor's version; always 1."
        )?;
        writeln!(out, "# TYPE swapvisor_build_info gauge")?;
        writeln!(
            out,
            "swapvisor_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )?;
        writeln!(
            out,
            "# HELP swapvisor_reloads_total Engine reloads by outcome."
        )?;
        writeln!(out, "# TYPE swapvisor_reloads_total counter")?;
        for (name, count) in ReloadOutcome::NAMES.iter().zip(&self.by_outcome) {
            writeln!(
                out,
                "swapvisor_reloads_total{{outcome=\"{name}\"}} {}",
                count.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP swapvisor_generation The live config's generation."
        )?;
        writeln!(out, "# TYPE swapvisor_generation gauge")?;
        writeln!(out, "swapvisor_generation {}", status.generation)?;
        writeln!(
            out,
            "# HELP swapvisor_config_last_reload_successful Whether the last reload attempt activated (1) or not (0)."
        )?;
        writeln!(out, "# TYPE swapvisor_config_last_reload_successful gauge")?;
        // Before any attempt the initial activation counts: the runtime would not run otherwise.
        let last = self.last_successful.load(Ordering::Relaxed).max(0);
        writeln!(out, "swapvisor_config_last_reload_successful {last}")?;
        writeln!(
            out,
            "# HELP swapvisor_reload_duration_seconds Time from a reload request to its outcome."
        )?;
        writeln!(out, "# TYPE swapvisor_reload_duration_seconds histogram")?;
        {
            let histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                writeln!(
                    out,
                    "swapvisor_reload_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
                )?;
            }
            writeln!(
                out,
                "swapvisor_reload_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                histogram.count
            )?;
            writeln!(
                out,
                "swapvisor_reload_duration_seconds_sum {}",
                histogram.sum
            )?;
            writeln!(
                out,
                "swapvisor_reload_duration_seconds_count {}",
                histogram.count
            )?;
        }
        writeln!(
            out,
            "# HELP swapvisor_plugin_restarts_total Crash restarts of each plugin instance."
        )?;
        writeln!(out, "# TYPE swapvisor_plugin_restarts_total counter")?;
        for plugin in &status.plugins {
            let name = label(&plugin.name);
            writeln!(
                out,
                "swapvisor_plugin_restarts_total{{plugin=\"{name}\"}} {}",
                plugin.restarts
            )?;
        }
        writeln!(
            out,
            "# HELP swapvisor_plugin_code_refused_total Plugin starts refused because a stored executable failed its check."
        )?;
        writeln!(out, "# TYPE swapvisor_plugin_code_refused_total counter")?;
        writeln!(
            out,
            "swapvisor_plugin_code_refused_total {}",
            crate::builtin::code_refused()
        )?;
        writeln!(
            out,
            "# HELP swapvisor_inflight_requests Requests running on the live engine."
        )?;
        writeln!(out, "# TYPE swapvisor_inflight_requests gauge")?;
        writeln!(out, "swapvisor_inflight_requests {}", status.in_flight)?;
        let retirements = &status.retirements;
        writeln!(
            out,
            "# HELP swapvisor_engines_retired_total Replaced engines that finished retiring."
        )?;
        writeln!(out, "# TYPE swapvisor_engines_retired_total counter")?;
        writeln!(
            out,
            "swapvisor_engines_retired_total {}",
            retirements.retired
        )?;
        writeln!(
            out,
            "# HELP swapvisor_retire_failures_total Retirements of replaced engines that failed, by stage."
        )?;
        writeln!(out, "# TYPE swapvisor_retire_failures_total counter")?;
        for (stage, count) in [
            ("drain", retirements.drain_overruns),
            ("stop", retirements.stop_failures),
        ] {
            writeln!(
                out,
                "swapvisor_retire_failures_total{{stage=\"{stage}\"}} {count}"
            )?;
        }
        Ok(())
    }
}
