//! A metrics handle for the types you write: through [`MetricsHandle`] (in
//! [`ModuleContext::metrics`](crate::extension::ModuleContext) and
//! [`PluginContext::metrics`](crate::plugin::PluginContext)) a module or plugin registers its own
//! counters, gauges and histograms, shown on `/metrics` while it serves. The types live in
//! [`crate::metrics`]; see there for the rules and an example.

pub use crate::metrics::{Counter, Gauge, Histogram, MetricError, MetricKind, MetricsHandle};
