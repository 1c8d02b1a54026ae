//! Carrying unchanged modules from one engine into the next.
//!
//! A reload that changes one module of a thousand should cost one module's build and start,
//! not a thousand. So a module instance is not owned by an engine: it is *shared*, the way a
//! listener is, and each engine that runs it holds a lease on it. The first lease starts the
//! module; the last one released stops it. A reload whose new config has a module with the same
//! [`ModuleKey`] as a running one (same name, type and resolved config, and the same keys for
//! its dependencies) builds no new instance: the new engine's plan takes the running one. When
//! the new engine starts, that module already runs, so taking the lease starts nothing; when the
//! old engine stops, releasing its lease stops nothing the new engine still holds.
//!
//! The reload contract is unchanged because leases are all there is to it:
//! - A new engine that fails to start releases the leases it took: the modules it carried stay
//!   running under the old engine's leases, the ones it added are stopped.
//! - A stop-first swap holds a lease on every carried module ([`ModuleHold`]) from before the
//!   old engine stops until the new one has started (or the old one has been restored), so
//!   "stop first" stops only what changes.
//!
//! A module type opts out with [`Module::carry_over`]; types contributed by plugins are always
//! rebuilt, since the plugin's code may have changed under the same config.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use swapvisor_actors::guard::{self, Interrupted};
use tokio::time::Instant;

use crate::config::ModuleSpec;
use crate::extension::{Module, ModuleContext};

/// What makes two module instances interchangeable: a digest of the module's name, type and
/// resolved config, and of its dependencies' keys (a module whose dependency changed counts as
/// changed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ModuleKey(String);

/// The key of every module of `modules`, by document position. `order` is a start order (every
/// module after its dependencies); without one (a dependency cycle, which is a config error)
/// there are no keys and nothing is carried.
pub(crate) fn module_keys(modules: &[ModuleSpec], order: Option<&[usize]>) -> Vec<Option<ModuleKey>> {
    let mut keys: Vec<Option<ModuleKey>> = vec![None; modules.len()];
    let Some(order) = order else {
        return keys;
    };
    let index: HashMap<&str, usize> = modules
        .iter()
        .enumerate()
        .rev()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    for &i in order {
        let module = &modules[i];
        let mut digest = Sha256::new();
        // Serializing plain data cannot fail: every map key is a string.
        let own = serde_json::to_vec(&(&module.name, &module.type_name, &module.config))
            .unwrap_or_default();
        digest.update(&own);
        let mut dependencies: Vec<&str> = module.depends_on.iter().map(String::as_str).collect();
        dependencies.sort_unstable();
        for dependency in dependencies {
            digest.update([0]);
            let key = index.get(dependency).and_then(|&d| keys[d].as_ref());
            digest.update(key.map_or("?", |k| k.0.as_str()).as_bytes());
        }
        let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
        keys[i] = Some(ModuleKey(hex));
    }
    keys
}

/// The module instances running in one context, by key: where a build finds what it can carry.
#[derive(Default)]
pub(crate) struct ModulePool {
    running: Mutex<HashMap<ModuleKey, Arc<SharedModule>>>,
}

impl ModulePool {
    fn entries(&self) -> MutexGuard<'_, HashMap<ModuleKey, Arc<SharedModule>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running instance under `key`, if it may be carried into another engine.
    pub(crate) fn carry(&self, key: &ModuleKey) -> Option<Arc<SharedModule>> {
        let found = self.entries().get(key).cloned()?;
        found.module.carry_over().then_some(found)
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
    pub(crate) name: String,
    pub(crate) type_name: String,
    key: Option<ModuleKey>,
    pub(crate) module: Box<dyn Module>,
    leases: Mutex<Leases>,
    /// Serializes starts and stops of this instance; the counts above are read without it.
    transition: tokio::sync::Mutex<()>,
}

impl SharedModule {
    /// A newly built instance, not started.
    pub(crate) fn new(spec: &ModuleSpec, key: Option<ModuleKey>, module: Box<dyn Module>) -> Self {
        Self {
            name: spec.name.clone(),
            type_name: spec.type_name.clone(),
            key,
            module,
            leases: Mutex::default(),
            transition: tokio::sync::Mutex::new(()),
        }
    }

    fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a lease for an engine that starts: starts the module if it does not run yet, by
    /// `deadline`. On failure no lease is taken and the module is not running.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        pool: &ModulePool,
        context: &ModuleContext,
        deadline: Instant,
    ) -> Result<(), String> {
        let _transition = self.transition.lock().await;
        {
            let mut leases = self.leases();
            if leases.started {
                leases.held += 1;
                return Ok(());
            }
        }
        let started = guard::run(Some(deadline), || self.module.start(context)).await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error.0),
            Err(Interrupted::Overran) => {
                return Err("did not start before the start timeout".to_owned());
            }
            Err(panicked) => return Err(panicked.to_string()),
        }
        *self.leases() = Leases {
            held: 1,
            started: true,
        };
        if let Some(key) = &self.key {
            pool.entries().insert(key.clone(), self.clone());
        }
        Ok(())
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
    async fn stop_unleased(self: &Arc<Self>, pool: &ModulePool, deadline: Instant) -> Result<(), String> {
        if let Some(key) = &self.key {
            let mut entries = pool.entries();
            if entries.get(key).is_some_and(|e| Arc::ptr_eq(e, self)) {
                entries.remove(key);
            }
        }
        self.leases().started = false;
        let stopped = guard::run(Some(deadline), || self.module.stop(deadline)).await;
        match stopped {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.0),
            Err(Interrupted::Overran) => Err("did not stop before the deadline".to_owned()),
            Err(panicked) => Err(panicked.to_string()),
        }
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
                tracing::warn!(module = %module.name, %error, "a module no engine holds failed to stop");
            }
        });
    }
}
