//! The metrics modules and plugins register, and when they show.
//!
//! Each module instance and each plugin actor registers through a scope of its own
//! ([`MetricScope`]), which labels its series with its owner (`module="web"`,
//! `plugin="hits"`). A series is keyed by its name and that owner label, so:
//!
//! - a module rebuilt by a reload, registering the same metric under the same name, gets the
//!   very series the old instance counted in, and it continues (both scopes hold it until the
//!   old instance stops);
//! - a scope shows its series only once it is *exposed*: a module's when the engine that
//!   started it has started whole, a plugin's once its actor has started. A candidate engine
//!   that fails to start (rolled back) never exposes, so what only it registered never shows;
//! - a scope ends when its owner stops (the module's last lease is released, the plugin's
//!   actor exits), and a series no scope holds any more is gone from `/metrics`: an engine
//!   that no longer has the module stops showing its metrics once the engine that had it is
//!   retired.
//!
//! A name has one type for every owner: registering it as another type is an error, as is a
//! name the runtime itself shows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc, Metric};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{HistogramOpts, IntCounter, IntGauge, Opts};

use super::handle::{MetricError, MetricKind, MetricsHandle};

/// One registered series: the metric its owners hold.
#[derive(Clone)]
pub(crate) enum SeriesValue {
    Counter(IntCounter),
    Gauge(IntGauge),
    Histogram(prometheus::Histogram),
}

impl SeriesValue {
    #[cfg(test)]
    fn kind(&self) -> MetricKind {
        match self {
            SeriesValue::Counter(_) => MetricKind::Counter,
            SeriesValue::Gauge(_) => MetricKind::Gauge,
            SeriesValue::Histogram(_) => MetricKind::Histogram,
        }
    }

    fn metric(&self) -> prometheus::proto::Metric {
        match self {
            SeriesValue::Counter(c) => c.metric(),
            SeriesValue::Gauge(g) => g.metric(),
            SeriesValue::Histogram(h) => h.metric(),
        }
    }

    /// A new series `name` labelled `owner`, with `buckets` for a histogram (none: the
    /// defaults).
    pub(crate) fn new(
        kind: MetricKind,
        name: &str,
        help: &str,
        buckets: &[f64],
        owner: (&str, &str),
    ) -> Result<Self, MetricError> {
        check_name(kind, name)?;
        let opts = Opts::new(name, help).const_label(owner.0, owner.1);
        let invalid = |e: prometheus::Error| MetricError::InvalidName {
            name: name.to_owned(),
            why: e.to_string(),
        };
        Ok(match kind {
            MetricKind::Counter => {
                SeriesValue::Counter(IntCounter::with_opts(opts).map_err(invalid)?)
            }
            MetricKind::Gauge => SeriesValue::Gauge(IntGauge::with_opts(opts).map_err(invalid)?),
            MetricKind::Histogram => {
                let mut opts = HistogramOpts::from(opts);
                if !buckets.is_empty() {
                    opts = opts.buckets(buckets.to_vec());
                }
                let histogram = prometheus::Histogram::with_opts(opts).map_err(|e| {
                    MetricError::InvalidBuckets {
                        name: name.to_owned(),
                        why: e.to_string(),
                    }
                })?;
                SeriesValue::Histogram(histogram)
            }
        })
    }
}

/// Whether `name` may name a metric of `kind`: Prometheus's charset, not reserved (`__`),
/// counters ending in `_total` and nothing else.
fn check_name(kind: MetricKind, name: &str) -> Result<(), MetricError> {
    let invalid = |why: &str| {
        Err(MetricError::InvalidName {
            name: name.to_owned(),
            why: why.to_owned(),
        })
    };
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return invalid("a metric name cannot be empty");
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == ':')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return invalid("a metric name is letters, digits, `_` and `:`, not starting with a digit");
    }
    if name.starts_with("__") {
        return invalid("names starting with `__` are reserved");
    }
    match (kind, name.ends_with("_total")) {
        (MetricKind::Counter, false) => invalid("a counter's name ends in `_total`"),
        (MetricKind::Gauge | MetricKind::Histogram, true) => {
            invalid("only a counter's name ends in `_total`")
        }
        _ => Ok(()),
    }
}

/// Who registers, and whether what it registered shows.
#[derive(Debug)]
pub(crate) struct ScopeState {
    id: u64,
    /// The label every series of the scope carries: `("module", name)` or `("plugin", name)`.
    owner: (&'static str, String),
    exposed: AtomicBool,
    ended: AtomicBool,
}

impl ScopeState {
    /// From now on, what the owner registered shows (unless it has ended).
    pub(crate) fn expose(&self) {
        if !self.ended.load(Ordering::Relaxed) {
            self.exposed.store(true, Ordering::Relaxed);
        }
    }
}

struct Series {
    value: SeriesValue,
    /// Buckets a histogram was registered with (empty: the defaults).
    buckets: Vec<f64>,
    holders: Vec<Arc<ScopeState>>,
}

struct StoredFamily {
    kind: MetricKind,
    help: String,
    /// By owner label.
    series: HashMap<(&'static str, String), Series>,
}

/// Families a built-in type reads at scrape time from values it keeps itself (an upstream's
/// targets), each sample labelled with its owner first.
pub(crate) type ScrapeFn = Arc<dyn Fn(&(&'static str, String)) -> Vec<MetricFamily> + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// Names the runtime itself shows.
    reserved: HashSet<String>,
    families: BTreeMap<String, StoredFamily>,
    /// Read at scrape time, while their scope is exposed.
    scraped: Vec<(Arc<ScopeState>, ScrapeFn)>,
}

/// Every metric the modules and plugins of one runtime registered.
#[derive(Default)]
pub(crate) struct ExtensionStore {
    inner: Mutex<Inner>,
    next_scope: AtomicU64,
}

impl std::fmt::Debug for ExtensionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionStore").finish_non_exhaustive()
    }
}

impl ExtensionStore {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `name` for the runtime: no extension may register it.
    pub(crate) fn reserve(&self, name: &str) {
        self.inner().reserved.insert(name.to_owned());
    }

    /// A scope for the owner `label="value"`, not exposed yet.
    pub(crate) fn scope(self: &Arc<Self>, label: &'static str, value: &str) -> MetricScope {
        let state = Arc::new(ScopeState {
            id: self.next_scope.fetch_add(1, Ordering::Relaxed),
            owner: (label, value.to_owned()),
            exposed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        });
        MetricScope {
            state,
            store: self.clone(),
        }
    }

    /// The series `name` of `scope`'s owner: the one already registered under that name and
    /// owner when there is one (its count goes on), else a new one.
    pub(crate) fn register(
        &self,
        scope: &Arc<ScopeState>,
        kind: MetricKind,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<SeriesValue, MetricError> {
        let owner = (scope.owner.0, scope.owner.1.as_str());
        check_name(kind, name)?;
        let mut inner = self.inner();
        if inner.reserved.contains(name) {
            return Err(MetricError::Reserved(name.to_owned()));
        }
        if let Some(registered) = inner.families.get(name).map(|f| f.kind)
            && registered != kind
        {
            return Err(MetricError::Clash {
                name: name.to_owned(),
                registered,
                asked: kind,
            });
        }
        if scope.ended.load(Ordering::Relaxed) {
            // The owner has stopped: what it registers now counts, and shows nowhere.
            return SeriesValue::new(kind, name, help, buckets, owner);
        }
        let family = inner
            .families
            .entry(name.to_owned())
            .or_insert_with(|| StoredFamily {
                kind,
                help: help.to_owned(),
                series: HashMap::new(),
            });
        let key = (scope.owner.0, scope.owner.1.clone());
        if let Some(series) = family.series.get_mut(&key) {
            if series.buckets != buckets {
                return Err(MetricError::InvalidBuckets {
                    name: name.to_owned(),
                    why: format!(
                        "it is registered with the buckets {:?}, not {buckets:?}",
                        series.buckets
                    ),
                });
            }
            if !series.holders.iter().any(|h| h.id == scope.id) {
                series.holders.push(scope.clone());
            }
            return Ok(series.value.clone());
        }
        let value = SeriesValue::new(kind, name, help, buckets, owner)?;
        family.series.insert(
            key,
            Series {
                value: value.clone(),
                buckets: buckets.to_vec(),
                holders: vec![scope.clone()],
            },
        );
        Ok(value)
    }

    /// Adds families that `scrape` reads for `scope`'s owner at each scrape (crate-internal:
    /// the built-in types' labelled families).
    pub(crate) fn scrape(&self, scope: &Arc<ScopeState>, scrape: ScrapeFn) {
        if !scope.ended.load(Ordering::Relaxed) {
            self.inner().scraped.push((scope.clone(), scrape));
        }
    }

    /// Lets go of everything `scope` holds; series no one holds any more are gone.
    fn end(&self, scope: &ScopeState) {
        scope.ended.store(true, Ordering::Relaxed);
        scope.exposed.store(false, Ordering::Relaxed);
        let mut inner = self.inner();
        inner.scraped.retain(|(holder, _)| holder.id != scope.id);
        inner.families.retain(|_, family| {
            family.series.retain(|_, series| {
                series.holders.retain(|h| h.id != scope.id);
                !series.holders.is_empty()
            });
            !family.series.is_empty()
        });
    }

    /// The families with at least one series an exposed scope holds, and what the exposed
    /// scopes' scrape functions read (families of one name merged).
    fn collect(&self) -> Vec<MetricFamily> {
        let (mut families, scraped) = {
            let inner = self.inner();
            let scraped: Vec<_> = inner
                .scraped
                .iter()
                .filter(|(scope, _)| scope.exposed.load(Ordering::Relaxed))
                .map(|(scope, scrape)| (scope.clone(), scrape.clone()))
                .collect();
            (Self::stored(&inner), scraped)
        };
        // Read outside the lock: a scrape function reads its owner's own atomics.
        for (scope, scrape) in scraped {
            for family in scrape(&scope.owner) {
                match families.iter_mut().find(|f| f.name() == family.name()) {
                    Some(existing) => existing
                        .mut_metric()
                        .extend(family.get_metric().iter().cloned()),
                    None => families.push(family),
                }
            }
        }
        families
    }

    fn stored(inner: &Inner) -> Vec<MetricFamily> {
        inner
            .families
            .iter()
            .filter_map(|(name, family)| {
                let metrics: Vec<_> = family
                    .series
                    .values()
                    .filter(|s| s.holders.iter().any(|h| h.exposed.load(Ordering::Relaxed)))
                    .map(|s| s.value.metric())
                    .collect();
                if metrics.is_empty() {
                    return None;
                }
                let mut out = MetricFamily::default();
                out.set_name(name.clone());
                out.set_help(family.help.clone());
                out.set_field_type(match family.kind {
                    MetricKind::Counter => MetricType::COUNTER,
                    MetricKind::Gauge => MetricType::GAUGE,
                    MetricKind::Histogram => MetricType::HISTOGRAM,
                });
                out.set_metric(metrics);
                Some(out)
            })
            .collect()
    }

    /// The kind of every series registered, for tests: `(name, owner value, kind)`.
    #[cfg(test)]
    fn registered(&self) -> Vec<(String, String, MetricKind)> {
        let inner = self.inner();
        let mut all: Vec<_> = inner
            .families
            .iter()
            .flat_map(|(name, f)| {
                f.series
                    .iter()
                    .map(move |((_, owner), s)| (name.clone(), owner.clone(), s.value.kind()))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        all
    }
}

/// The registrations of one owner (a module instance, a plugin actor): what it registers shows
/// once [`expose`](Self::expose) is called, and is let go when the scope ends or drops.
#[derive(Debug)]
pub(crate) struct MetricScope {
    state: Arc<ScopeState>,
    store: Arc<ExtensionStore>,
}

impl MetricScope {
    /// The handle the owner registers through.
    pub(crate) fn handle(&self) -> MetricsHandle {
        MetricsHandle::scoped(self.store.clone(), self.state.clone())
    }

    /// From now on, what the owner registered shows.
    pub(crate) fn expose(&self) {
        self.state.expose();
    }
}

impl Drop for MetricScope {
    fn drop(&mut self) {
        self.store.end(&self.state);
    }
}

/// The store, as the registry collects it. Its families change at run time, so it declares
/// none; [`ExtensionStore::register`] checks names instead.
pub(super) struct Collected(pub(super) Arc<ExtensionStore>);

impl Collector for Collected {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

#[cfg(test)]
#[path = "extension_tests.rs"]
mod tests;
