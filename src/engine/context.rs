//! The context engines are built in, and what the engines built in one context share.
//!
//! A runtime builds every engine of its life in one [`EngineContext`]: the engines share its
//! listener pool (so a reload that keeps an address keeps the socket) and its plugin host (so
//! a reload that keeps a plugin keeps the instance). An engine built on its own gets a context
//! of its own, whose pool serves that engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::future::BoxFuture;

use super::carry::ModulePool;
use super::requests::RequestMetrics;
use super::{Engine, EngineInner, json_response};
use crate::config::{DocumentLimits, SharedEnv, process_env};
use crate::extension::Services;
use crate::metrics::MetricsRegistry;
use crate::net::{HttpDispatch, HttpRequest, HttpResponse, ListenerKey, ListenerPool};
use crate::plugin::PluginHost;
use crate::registry::Registry;

/// The environment every engine build of a runtime shares: the types configs may use, the
/// limits on config documents, where `${VAR}` values come from, and the listeners and plugins
/// the engines share.
pub struct EngineContext {
    registry: Arc<Registry>,
    limits: DocumentLimits,
    env: SharedEnv,
    listeners: ListenerPool,
    plugins: PluginHost,
    /// The listeners and plugins as modules and steps see them.
    services: Services,
    census: EngineCensus,
    /// Every metric of the runtime: the request metrics below, the listeners', and what
    /// modules and plugins register.
    metrics: MetricsRegistry,
    requests: RequestMetrics,
    /// The module instances running, which a build may carry over.
    modules: Arc<ModulePool>,
    /// The engine that last started: what a new build reports its changes against.
    live: Mutex<Weak<EngineInner>>,
}

impl std::fmt::Debug for EngineContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineContext")
            .field("registry", &self.registry)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EngineContext {
    /// A context around `listeners`, whose requests `dispatch` routes, and `plugins`.
    pub(crate) fn new(
        registry: Arc<Registry>,
        limits: DocumentLimits,
        env: SharedEnv,
        listeners: ListenerPool,
        plugins: PluginHost,
    ) -> Self {
        let services = Services::new(listeners.clone(), Arc::new(plugins.clone()));
        let metrics = MetricsRegistry::new();
        metrics.register(crate::net::ListenerCollector::default());
        plugins.set_metrics(metrics.extensions().clone());
        Self {
            registry,
            limits,
            env,
            listeners,
            plugins,
            services,
            census: EngineCensus::default(),
            requests: RequestMetrics::registered_in(&metrics),
            metrics,
            modules: Arc::default(),
            live: Mutex::default(),
        }
    }

    /// A context for one engine used on its own: a private listener pool that serves the
    /// engine built in it, private plugins, the process environment and the default limits.
    pub(crate) fn standalone(registry: &Registry) -> Self {
        Self::new(
            Arc::new(registry.clone()),
            DocumentLimits::default(),
            Arc::new(process_env),
            ListenerPool::default(),
            PluginHost::new(Arc::new(process_env)),
        )
    }

    /// The same context, with documents parsed within `limits`.
    pub(crate) fn with_limits(mut self, limits: DocumentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The types configs may use.
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Limits on config documents.
    pub(crate) fn limits(&self) -> &DocumentLimits {
        &self.limits
    }

    /// Where `${VAR}` values come from.
    pub(crate) fn env(&self) -> &SharedEnv {
        &self.env
    }

    /// The listener pool the engines share.
    pub(crate) fn listeners(&self) -> &ListenerPool {
        &self.listeners
    }

    /// The plugin instances the engines share.
    pub(crate) fn plugins(&self) -> &PluginHost {
        &self.plugins
    }

    /// The listeners and plugins, as modules and steps see them.
    pub(crate) fn services(&self) -> &Services {
        &self.services
    }

    /// Every metric of the runtime, for `/metrics`.
    pub(crate) fn metrics(&self) -> &MetricsRegistry {
        &self.metrics
    }

    /// Request counts by pipeline, kept across this runtime's engines.
    pub(crate) fn requests(&self) -> &RequestMetrics {
        &self.requests
    }

    /// The module instances running in this context.
    pub(super) fn modules(&self) -> &Arc<ModulePool> {
        &self.modules
    }

    /// The engine that last started, if it is still around.
    pub(super) fn live_engine(&self) -> Option<Arc<EngineInner>> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
    }

    /// Notes that `engine` has started: later builds report their changes against it.
    pub(super) fn started(&self, engine: &Arc<EngineInner>) {
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(engine);
    }

    pub(crate) fn census(&self) -> &EngineCensus {
        &self.census
    }

    /// Lets the listener pool serve `engine`, unless it already routes requests elsewhere (in
    /// a runtime, to whichever engine is live).
    pub(super) fn serve_if_standalone(&self, engine: &Arc<EngineInner>) {
        self.listeners
            .set_dispatch(Arc::new(OwnDispatch(Arc::downgrade(engine))));
    }
}

/// How many engines of one context are running: 1 in steady state, 2 briefly while a
/// start-first swap drains the old one.
#[derive(Debug, Default)]
pub(crate) struct EngineCensus {
    running: AtomicUsize,
}

impl EngineCensus {
    pub(super) fn started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn stopped(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Engines running now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// Routes a standalone engine's listeners to the engine itself.
struct OwnDispatch(Weak<EngineInner>);

impl HttpDispatch for OwnDispatch {
    fn dispatch(
        &self,
        listener: &ListenerKey,
        request: HttpRequest,
    ) -> BoxFuture<'static, HttpResponse> {
        let engine = self.0.upgrade().map(|inner| Engine { inner });
        let listener = listener.clone();
        Box::pin(async move {
            match engine {
                Some(engine) => engine.serve_http(&listener, request).await,
                None => json_response(
                    hyper::StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"error": "the engine has stopped"}),
                ),
            }
        })
    }
}
