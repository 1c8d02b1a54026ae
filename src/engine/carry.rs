//! Carrying unchanged modules from one engine into the next.
//!
//! A reload that changes one module of a thousand should cost one module's build and start,
//! not a thousand. So a module instance is not owned by an engine: it is *shared*, the way a
//! listener is, and each engine that runs it holds a lease on it. The first lease starts the
//! module; the last one released stops it. A reload whose new config has a module spec equal to
//! a running one's (same name, type, resolved config and dependencies), all of whose
//! dependencies are carried over too, builds no new instance: the new engine's plan takes the
//! running one (see [`carried`]). When the new engine starts, that module already runs, so
//! taking the lease starts nothing; when the old engine stops, releasing its lease stops nothing
//! the new engine still holds.
//!
//! The reload contract is unchanged because leases are all there is to it:
//! - A new engine that fails to start releases the leases it took: the modules it carried stay
//!   running under the old engine's leases, the ones it added are stopped.
//! - A stop-first swap holds a lease on every carried module ([`ModuleHold`]) from before the
//!   old engine stops until the new one has started (or the old one has been restored), so
//!   "stop first" stops only what changes.
//!
//! Comparing specs directly (no hash) means a module is carried only when its spec is equal,
//! never on a digest collision. A module type opts out with [`Module::carry_over`]; types
//! contributed by plugins are always rebuilt, since the plugin's code may have changed under the
//! same config.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use swapvisor_actors::guard::{self, Interrupted};
use tokio::time::Instant;

use crate::config::ModuleSpec;
use crate::extension::metrics::MetricsHandle;
use crate::extension::{Module, ModuleContext, ModuleError};
use crate::metrics::{ExtensionStore, MetricScope};

/// Which modules of `modules` (by document position) can take the running instance of the
/// same name from `pool`, deciding in start `order` so that a module is carried only when all
/// its dependencies are: a module whose dependency changed counts as changed. Without an order
/// (a dependency cycle, which is a config error) nothing is carried. `rebuild(i)` marks modules
/// that must be rebuilt whatever their spec.
pub(crate) fn carried(
    modules: &[ModuleSpec],
    order: Option<&[usize]>,
    pool: &ModulePool,
    rebuild: impl Fn(usize) -> bool,
) -> Vec<Option<Arc<SharedModule>>> {
    let mut carried: Vec<Option<Arc<SharedModule>>> = vec![None; modules.len()];
    let running = pool.entries();
    let (Some(order), false) = (order, running.is_empty()) else {
        return carried;
    };
    let index: HashMap<&str, usize> = modules
        .iter()
        .enumerate()
        .rev()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    for &i in order {
        let spec = &modules[i];
        let Some(instances) = running.get(&spec.name) else {
            continue;
        };
        let dependencies_carried = spec
            .depends_on
            .iter()
            .all(|d| index.get(d.as_str()).is_some_and(|&d| carried[d].is_some()));
        if !dependencies_carried || rebuild(i) {
            continue;
        }
        carried[i] = instances
            .iter()
            .find(|instance| instance.spec == *spec && instance.module.carry_over())
            .cloned();
    }
    carried
}

/// The module instances running in one context, by name: where a build finds what it can
/// carry. A name has two instances while a start-first swap replaces that module (and while a
/// replacement that failed to start is being stopped again).
#[derive(Default)]
pub(crate) struct ModulePool {
    running: Mutex<HashMap<String, Vec<Arc<SharedModule>>>>,
}

impl ModulePool {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<SharedModule>>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How many engines hold a module, and whether it runs.
#[derive(Debug, Default)]
struct Leases {
    held: usize,
    started: bool,
}

/// One module instance, shared by the engines that run it.
pub(crate) struct SharedModule {
    /// The resolved spec it was built from: what a later build compares its own with.
    pub(crate) spec: ModuleSpec,
    pub(crate) module: Box<dyn Module>,
    leases: Mutex<Leases>,
    /// What the running instance registered in `/metrics`: from its start to its stop.
    metrics: Mutex<Option<MetricScope>>,
    /// Serializes starts and stops of this instance; the counts above are read without it.
    transition: tokio::sync::Mutex<()>,
}

impl SharedModule {
    /// A newly built instance, not started.
    pub(crate) fn new(spec: &ModuleSpec, module: Box<dyn Module>) -> Self {
        Self {
            spec: spec.clone(),
            module,
            leases: Mutex::default(),
            metrics: Mutex::default(),
            transition: tokio::sync::Mutex::new(()),
        }
    }

    fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn metrics(&self) -> MutexGuard<'_, Option<MetricScope>> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shows what the running instance registered: its engine has started whole.
    pub(crate) fn expose_metrics(&self) {
        if let Some(scope) = &*self.metrics() {
            scope.expose();
        }
    }

    /// Takes a lease for an engine that starts: starts the module if it does not run yet, by
    /// `deadline`, with the context `context` makes around the handle its metrics go through
    /// (into `metrics`). `Ok(false)` when it ran already. On failure no lease is taken and the
    /// module is not running.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        pool: &ModulePool,
        metrics: &Arc<ExtensionStore>,
        context: impl FnOnce(MetricsHandle) -> ModuleContext,
        deadline: Instant,
    ) -> Result<bool, String> {
        let _transition = self.transition.lock().await;
        {
            let mut leases = self.leases();
            if leases.started {
                leases.held += 1;
                return Ok(false);
            }
        }
        let scope = metrics.scope("module", &self.spec.name);
        let context = context(scope.handle());
        let started = guard::run(Some(deadline), || self.module.start(&context)).await;
        // On failure the scope drops here, and what the module registered with it.
        explained(started, "did not start before the start timeout")?;
        *self.metrics() = Some(scope);
        *self.leases() = Leases {
            held: 1,
            started: true,
        };
        let mut entries = pool.entries();
        entries
            .entry(self.spec.name.clone())
            .or_default()
            .push(self.clone());
        Ok(true)
    }

    /// Gives an engine's lease back: the last one stops the module, by `deadline`. `Ok(false)`
    /// when others still hold it and it runs on.
    pub(crate) async fn release(
        self: &Arc<Self>,
        pool: &ModulePool,
        deadline: Instant,
    ) -> Result<bool, String> {
        let _transition = self.transition.lock().await;
        {
            let mut leases = self.leases();
            leases.held = leases.held.saturating_sub(1);
            if leases.held > 0 || !leases.started {
                return Ok(false);
            }
        }
        self.stop_unleased(pool, deadline).await.map(|()| true)
    }

    /// Stops the module: called with the transition lock held and no lease left.
    async fn stop_unleased(
        self: &Arc<Self>,
        pool: &ModulePool,
        deadline: Instant,
    ) -> Result<(), String> {
        {
            let mut entries = pool.entries();
            if let Some(instances) = entries.get_mut(&self.spec.name) {
                instances.retain(|instance| !Arc::ptr_eq(instance, self));
                if instances.is_empty() {
                    entries.remove(&self.spec.name);
                }
            }
        }
        self.leases().started = false;
        // Its metrics go with it.
        drop(self.metrics().take());
        let stopped = guard::run(Some(deadline), || self.module.stop(deadline)).await;
        explained(stopped, "did not stop before the deadline")
    }

    /// A lease held for the length of a stop-first swap, so that the old engine's stop leaves
    /// the module running for the new one. `None` when the module does not run.
    pub(crate) fn hold(
        self: &Arc<Self>,
        pool: &Arc<ModulePool>,
        stop_timeout: std::time::Duration,
    ) -> Option<ModuleHold> {
        let mut leases = self.leases();
        if !leases.started {
            return None;
        }
        leases.held += 1;
        Some(ModuleHold {
            module: self.clone(),
            pool: pool.clone(),
            stop_timeout,
        })
    }
}

/// A module's start or stop as it ended: its own error, a panic, or `overran` when it ran past
/// its deadline.
fn explained(
    ended: Result<Result<(), ModuleError>, Interrupted>,
    overran: &str,
) -> Result<(), String> {
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.0),
        Err(Interrupted::Overran) => Err(overran.to_owned()),
        Err(panicked) => Err(panicked.to_string()),
    }
}

/// A lease on a running module that no engine holds: see [`SharedModule::hold`].
pub(crate) struct ModuleHold {
    module: Arc<SharedModule>,
    pool: Arc<ModulePool>,
    stop_timeout: std::time::Duration,
}

impl Drop for ModuleHold {
    fn drop(&mut self) {
        {
            let mut leases = self.module.leases();
            leases.held = leases.held.saturating_sub(1);
            if leases.held > 0 || !leases.started {
                return;
            }
        }
        // Neither the new engine nor the restored old one took the module (both failed to
        // start): nothing runs it any more, so it stops, off the swap that dropped the hold.
        let (module, pool) = (self.module.clone(), self.pool.clone());
        let deadline = guard::deadline_in(self.stop_timeout);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _transition = module.transition.lock().await;
            let unleased = {
                let leases = module.leases();
                leases.held == 0 && leases.started
            };
            if unleased && let Err(error) = module.stop_unleased(&pool, deadline).await {
                tracing::warn!(module = %module.spec.name, %error, "a module no engine holds failed to stop");
            }
        });
    }
}
