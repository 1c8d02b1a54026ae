//! Metrics: the handle modules and plugins register their own with ([`MetricsHandle`], also at
//! [`crate::extension::metrics`]), and the registry every metric `/metrics` shows is encoded
//! from, in one place.
//!
//! A runtime has one `MetricsRegistry` (a [`prometheus::Registry`]), in its engine context.
//! What counts on the request path holds its counters and histograms from the moment it is
//! built (atomics, no lookup), and the registry reads them at scrape time:
//!
//! - the request metrics of every pipeline ([`crate::engine::RequestMetrics`]);
//! - the listeners of the process and the request bodies past their deadline (`net`, whose
//!   collector the engine context registers: this module sits below `net`);
//! - what modules and plugins register through their
//!   [`crate::extension::metrics::MetricsHandle`] (`extension`), shown only
//!   while their owner is part of a started engine or a running plugin.
//!
//! Values that live elsewhere (the reload counters of the admin API, the status of the
//! runtime) are added per scrape by `MetricsRegistry::render`. The text is the classic
//! Prometheus format 0.0.4 (`CONTENT_TYPE`): families sorted by name, each with `# HELP` and
//! `# TYPE`, counters named with their `_total`, label order as registered.

mod extension;
mod family;
mod handle;

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;

pub(crate) use extension::{ExtensionStore, MetricScope, ScopeState, ScrapeFn, SeriesValue};
pub(crate) use family::Family;
pub use handle::{Counter, Gauge, Histogram, MetricError, MetricKind, MetricsHandle};

/// The families the admin API adds per scrape (its reload metrics and the runtime's status):
/// names no extension may register.
pub(crate) const SCRAPED: [&str; 16] = [
    "swapvisor_build_info",
    "swapvisor_config_last_reload_successful",
    "swapvisor_engines_retired_total",
    "swapvisor_generation",
    "swapvisor_inflight_requests",
    "swapvisor_plugin_checkpoints_refused_total",
    "swapvisor_plugin_checkpoints_total",
    "swapvisor_plugin_code_refused_total",
    "swapvisor_plugin_escalations_total",
    "swapvisor_plugin_reloads_total",
    "swapvisor_plugin_restarts_total",
    "swapvisor_plugin_state",
    "swapvisor_plugin_up",
    "swapvisor_reload_duration_seconds",
    "swapvisor_reloads_total",
    "swapvisor_retire_failures_total",
];

/// The content type of [`MetricsRegistry::render`]'s text.
#[cfg_attr(not(feature = "admin"), allow(dead_code))]
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics of one runtime. Cheap to clone.
#[derive(Clone)]
pub(crate) struct MetricsRegistry {
    registry: prometheus::Registry,
    extensions: Arc<ExtensionStore>,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry").finish_non_exhaustive()
    }
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRegistry {
    /// A registry with the process's listener metrics and the extension metrics registered.
    pub(crate) fn new() -> Self {
        let extensions = Arc::new(ExtensionStore::default());
        for name in SCRAPED {
            extensions.reserve(name);
        }
        let registry = Self {
            registry: prometheus::Registry::new(),
            extensions: extensions.clone(),
        };
        registry.register(extension::Collected(extensions));
        registry
    }

    /// Adds `collector`'s families. A collector whose names are taken is a bug, logged.
    pub(crate) fn register(&self, collector: impl Collector + 'static) {
        for desc in collector.desc() {
            self.extensions.reserve(&desc.fq_name);
        }
        if let Err(error) = self.registry.register(Box::new(collector)) {
            tracing::error!(%error, "a metrics collector could not be registered");
        }
    }

    /// Where modules and plugins register their own metrics.
    pub(crate) fn extensions(&self) -> &Arc<ExtensionStore> {
        &self.extensions
    }

    /// The text exposition of every registered metric and of `scraped`, the families read for
    /// this scrape (whose names [`ExtensionStore::reserve`] should know).
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn render(&self, scraped: Vec<MetricFamily>) -> String {
        let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
        for family in self.registry.gather().into_iter().chain(scraped) {
            // The encoder refuses a family without samples (a listener-less process, say).
            if !family.get_metric().is_empty() {
                families.insert(family.name().to_owned(), family);
            }
        }
        for family in families.values_mut() {
            // By label values, as the registry sorts what it gathers.
            family.mut_metric().sort_by(|a, b| {
                let values = |m: &prometheus::proto::Metric| {
                    m.get_label()
                        .iter()
                        .map(|l| l.value().to_owned())
                        .collect::<Vec<_>>()
                };
                values(a).cmp(&values(b))
            });
        }
        let families: Vec<MetricFamily> = families.into_values().collect();
        let mut text = String::with_capacity(4096);
        if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
            // Only a family without samples or name fails, and none is left.
            tracing::error!(%error, "the metrics could not be encoded");
        }
        text
    }
}
