//! Metrics of a module or plugin type's own, shown on the admin API's `/metrics`.
//!
//! A module gets a [`MetricsHandle`] in its [`ModuleContext`](super::ModuleContext), a plugin
//! in its [`PluginContext`](super::plugin::PluginContext). Register at start and keep what
//! the handle returns: [`Counter`], [`Gauge`] and [`Histogram`] are cheap to clone and count
//! with atomics, so they belong on the hot path.
//!
//! Every series carries its owner as a label, `module="<name>"` or `plugin="<name>"`, so two
//! modules of one type register the same name without colliding. Across reloads:
//!
//! - a module (or plugin) rebuilt by a reload that registers the same name gets the same
//!   series back, and its count goes on: nothing is registered twice;
//! - what a module registers shows once the engine that started it has started whole, and
//!   goes when the module stops: an engine that no longer has the module stops showing its
//!   metrics when the engine that had it retires, and a candidate that fails to start (rolled
//!   back) never shows what only it registered. A plugin's show from its start until its
//!   actor exits.
//!
//! Names follow Prometheus: letters, digits, `_` and `:`; a counter's name ends in `_total`,
//! no other's does. A name has one type across the runtime; registering it as another type, or
//! a name the runtime shows itself (`swapvisor_reloads_total`, ...), is a [`MetricError`].
//!
//! ```
//! use futures::future::BoxFuture;
//! use swapvisor::extension::metrics::{Counter, MetricsHandle};
//! use swapvisor::extension::{Module, ModuleContext, ModuleError};
//! use tokio::time::Instant;
//!
//! /// Counts the jobs it runs.
//! #[derive(Default)]
//! struct Worker {
//!     jobs: std::sync::OnceLock<Counter>,
//! }
//!
//! impl Module for Worker {
//!     fn start<'a>(&'a self, context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
//!         Box::pin(async move {
//!             let jobs = context
//!                 .metrics
//!                 .counter("myapp_jobs_total", "Jobs the worker ran.")
//!                 .map_err(|e| ModuleError(e.to_string()))?;
//!             jobs.inc();
//!             let _ = self.jobs.set(jobs);
//!             Ok(())
//!         })
//!     }
//!
//!     fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
//!         Box::pin(async { Ok(()) })
//!     }
//! }
//!
//! // A handle of no runtime checks names the same way; what it returns counts, unshown.
//! let metrics = MetricsHandle::detached();
//! assert_eq!(metrics.counter("myapp_jobs_total", "Jobs.").unwrap().get(), 0);
//! assert_eq!(
//!     metrics.counter("myapp_jobs", "Jobs.").unwrap_err().to_string(),
//!     "invalid metric name \"myapp_jobs\": a counter's name ends in `_total`"
//! );
//! ```

use std::fmt;
use std::sync::Arc;

use super::{ExtensionStore, ScopeState, SeriesValue};

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A count that only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted into buckets.
    Histogram,
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        })
    }
}

/// Why a metric could not be registered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// The name breaks Prometheus's rules or ours.
    #[error("invalid metric name {name:?}: {why}")]
    InvalidName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The name is registered as another kind of metric.
    #[error("metric {name:?} is already registered as a {registered}, not a {asked}")]
    Clash {
        /// The name asked for.
        name: String,
        /// What it is registered as.
        registered: MetricKind,
        /// What was asked for.
        asked: MetricKind,
    },
    /// The runtime shows a metric of this name itself.
    #[error("metric {0:?} is one the runtime shows itself")]
    Reserved(String),
    /// A histogram's buckets are not strictly increasing, or differ from the ones it was
    /// registered with.
    #[error("invalid buckets for histogram {name:?}: {why}")]
    InvalidBuckets {
        /// The histogram's name.
        name: String,
        /// What is wrong with them.
        why: String,
    },
}

/// Registers a module's or plugin's metrics with the runtime: see the [module docs](crate::metrics).
/// Cheap to clone.
#[derive(Clone)]
pub struct MetricsHandle {
    /// None: detached, belonging to no runtime.
    scoped: Option<(Arc<ExtensionStore>, Arc<ScopeState>)>,
}

impl fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsHandle")
            .field("detached", &self.scoped.is_none())
            .finish_non_exhaustive()
    }
}

impl MetricsHandle {
    pub(crate) fn scoped(store: Arc<ExtensionStore>, scope: Arc<ScopeState>) -> Self {
        Self {
            scoped: Some((store, scope)),
        }
    }

    /// Shows what was registered through this handle's scope from now on.
    pub(crate) fn expose(&self) {
        if let Some((_, scope)) = &self.scoped {
            scope.expose();
        }
    }

    /// Adds families read at each scrape for this handle's owner (`owner` is its label, such as
    /// `("module", "api")`), shown and gone with the owner's other metrics.
    pub(crate) fn scrape(&self, scrape: super::extension::ScrapeFn) {
        if let Some((store, scope)) = &self.scoped {
            store.scrape(scope, scrape);
        }
    }

    /// A handle that belongs to no runtime (for tests, and an engine's modules outside one):
    /// names are checked the same, and what it returns counts without being shown anywhere.
    pub fn detached() -> Self {
        Self { scoped: None }
    }

    fn register(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<SeriesValue, MetricError> {
        match &self.scoped {
            Some((store, scope)) => store.register(scope, kind, name, help, buckets),
            None => SeriesValue::new(kind, name, help, buckets, ("owner", "detached")),
        }
    }

    /// The counter `name` (ending in `_total`), described by `help`.
    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricError> {
        match self.register(MetricKind::Counter, name, help, &[])? {
            SeriesValue::Counter(c) => Ok(Counter(c)),
            _ => unreachable!("register answers the kind asked for"),
        }
    }

    /// The gauge `name`, described by `help`.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricError> {
        match self.register(MetricKind::Gauge, name, help, &[])? {
            SeriesValue::Gauge(g) => Ok(Gauge(g)),
            _ => unreachable!("register answers the kind asked for"),
        }
    }

    /// The histogram `name`, described by `help`, with the upper bounds `buckets` (strictly
    /// increasing; empty for Prometheus's defaults, 5 ms to 10 s).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricError> {
        match self.register(MetricKind::Histogram, name, help, buckets)? {
            SeriesValue::Histogram(h) => Ok(Histogram(h)),
            _ => unreachable!("register answers the kind asked for"),
        }
    }
}

/// A count that only goes up. Cheap to clone; clones count together.
#[derive(Clone, Debug)]
pub struct Counter(prometheus::IntCounter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down. Cheap to clone; clones share the value.
#[derive(Clone, Debug)]
pub struct Gauge(prometheus::IntGauge);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.set(value);
    }

    /// Adds `n` (negative to take away).
    pub fn add(&self, n: i64) {
        self.0.add(n);
    }

    /// The value now.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// Observations counted into buckets. Cheap to clone; clones count together.
#[derive(Clone, Debug)]
pub struct Histogram(prometheus::Histogram);

impl Histogram {
    /// Counts one observation of `value` (seconds, for a duration).
    pub fn observe(&self, value: f64) {
        self.0.observe(value);
    }

    /// How many observations were counted.
    pub fn count(&self) -> u64 {
        self.0.get_sample_count()
    }
}
