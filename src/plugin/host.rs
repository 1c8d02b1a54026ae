//! The plugin host: every plugin instance of a runtime, by name, outliving the engines that use
//! them.
//!
//! Plugins are shared by engines the way listeners are. An engine *attaches* when it starts:
//! the host works out what the new config changes ([`PluginChanges`]) and applies it in one
//! place, then registers the engine's instances as a restart group. An engine *detaches* when
//! it stops: its group goes, and every instance no attached engine uses any more is stopped
//! (unless a stop-first swap holds the host). A failed start detaches with rollback, which
//! applies the inverted changes: what it added stops, what it changed goes back.
//!
//! Each instance has its own slot, with its own swap Supervisor (hibernating while idle) and
//! a stable [`PluginRef`](super::PluginRef): calls take a lease on whatever instance is live,
//! so a reload drains the old instance before handing its state on, and calls arriving
//! meanwhile wait at the gate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use ractor::{Actor, ActorRef};
use serde_json::Value;
use swapvisor_actors::{HibernatingSupervisor, Origin, Slot, SupervisorArgs};
use tokio::time::Instant;

use super::changes::{PluginChange, PluginChanges, Running};
use super::checkpoints::CheckpointStore;
use super::core::CrashRecord;
use super::groups::{GroupId, RestartGroups};
use super::history::PluginHistory;
use super::instance::{PluginUnitContext, TypeGuard};
use super::link::{ActorIndex, RestartLink, RestartMsg};
use super::reference::PluginRef;
use super::restart::{Escalation, Restarter, RestarterArgs};
use super::slot::PluginSlot;
use super::spec::{PluginPlan, PluginUnitSpec};
use super::status::PluginStatus;
use crate::config::SharedEnv;
use crate::extension::PluginCalls;
use crate::extension::plugin::{DEFAULT_CHECKPOINT_LIMIT, PluginError};
use crate::registry::{Registry, Types};
use crate::state::StateDir;

/// Every plugin instance of a runtime. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PluginHost {
    shared: Arc<HostShared>,
}

struct HostShared {
    /// Where `${VAR}` values of per-plugin reloads come from.
    env: SharedEnv,
    slots: DashMap<String, Arc<PluginSlot>>,
    /// Names in the order their instances were created.
    order: Mutex<Vec<String>>,
    groups: Arc<RestartGroups>,
    actors: Arc<ActorIndex>,
    /// Spawned with the first instance.
    restarter: tokio::sync::OnceCell<ActorRef<RestartMsg>>,
    /// Serializes attach and detach, so that specs and groups change one engine at a time.
    attach_lock: tokio::sync::Mutex<()>,
    holds: AtomicUsize,
    /// Where crash loops go (the engine's Supervisor); set once by the runtime.
    escalation: OnceLock<Escalation>,
    /// What a per-plugin reload is checked against (the live engine); set once by the runtime.
    type_guard: OnceLock<TypeGuard>,
    /// Where plugins register their metrics (the runtime's); set once by the engine context.
    metrics: OnceLock<Arc<crate::metrics::ExtensionStore>>,
    /// Where instances keep their checkpoints on disk; set once by the runtime, if it has one.
    state: OnceLock<StateDir>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.start_order())
            .finish()
    }
}

/// What one engine's start did to the plugins, so that its stop (or its failed start) undoes
/// exactly that. Filled as the start goes, before each step, so that a start cut short by its
/// deadline still knows what to give back.
#[derive(Debug, Default)]
pub(crate) struct Attachment {
    /// The engine's restart group, once everything was applied.
    group: Option<GroupId>,
    /// The changes made (the last one perhaps still under way). Removals are not among them:
    /// they happen later, when the engine that still uses the instance detaches.
    applied: PluginChanges,
    /// The registry the engine's instances were built with.
    registry: Arc<Registry>,
}

impl Attachment {
    /// The instance being changed last (the one a timeout interrupted).
    pub(crate) fn last_name(&self) -> String {
        self.applied
            .last()
            .map(|change| change.name().to_owned())
            .unwrap_or_default()
    }
}

/// Keeps instances that no engine uses any more alive until dropped (a stop-first swap).
pub(crate) struct PluginHold {
    host: PluginHost,
}

impl Drop for PluginHold {
    fn drop(&mut self) {
        if self.host.shared.holds.fetch_sub(1, Ordering::SeqCst) == 1
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let host = self.host.clone();
            handle.spawn(async move {
                host.stop_unused(Instant::now() + Duration::from_secs(10))
                    .await
            });
        }
    }
}

impl PluginHost {
    /// No plugins yet; per-plugin reloads expand `${VAR}` from `env`.
    pub(crate) fn new(env: SharedEnv) -> Self {
        Self {
            shared: Arc::new(HostShared {
                env,
                slots: DashMap::new(),
                order: Mutex::default(),
                groups: Arc::default(),
                actors: Arc::default(),
                restarter: tokio::sync::OnceCell::new(),
                attach_lock: tokio::sync::Mutex::default(),
                holds: AtomicUsize::new(0),
                escalation: OnceLock::new(),
                type_guard: OnceLock::new(),
                metrics: OnceLock::new(),
                state: OnceLock::new(),
            }),
        }
    }

    /// Lets plugin instances register metrics in `store`. Later calls are ignored.
    pub(crate) fn set_metrics(&self, store: Arc<crate::metrics::ExtensionStore>) {
        let _ = self.shared.metrics.set(store);
    }

    /// Keeps the instances' checkpoints in `dir` too (`checkpoints/<name>.json`), and starts
    /// each instance from the checkpoint found there. Set once, before the first instance.
    pub(crate) fn set_state_dir(&self, dir: StateDir) {
        let _ = self.shared.state.set(dir);
    }

    /// A stable reference to the instance named `name`, if one runs.
    pub(crate) fn get(&self, name: &str) -> Option<PluginRef> {
        let slot = self.shared.slots.get(name)?.clone();
        Some(PluginRef::new(slot))
    }

    /// Every instance, in start order.
    pub(crate) fn status(&self) -> Vec<PluginStatus> {
        self.slots_in_order().iter().map(|s| s.status()).collect()
    }

    /// Keeps instances that lose their last engine alive until the hold is dropped.
    pub(crate) fn hold(&self) -> PluginHold {
        self.shared.holds.fetch_add(1, Ordering::SeqCst);
        PluginHold { host: self.clone() }
    }

    /// Routes escalations (crash loops) to `escalate`. Set once, before the first instance.
    pub(crate) fn set_escalation(&self, escalate: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.shared.escalation.set(Arc::new(escalate));
    }

    /// Checks per-plugin reloads with `guard(instance name, types the new instance provides)`.
    /// Set once, before the first instance.
    pub(crate) fn set_type_guard(
        &self,
        guard: impl Fn(&str, &Types) -> Result<(), String> + Send + Sync + 'static,
    ) {
        let _ = self.shared.type_guard.set(Arc::new(guard));
    }

    /// True when every instance serves: none has failed or stopped (an engine reload would
    /// restart those, even to the same spec).
    pub(crate) fn all_serving(&self) -> bool {
        self.slots_in_order().iter().all(|slot| slot.is_serving())
    }

    /// Attaches an engine whose config asks for `plan`: works out the changes against what
    /// runs now and makes them in order, recording each in `attachment` before it is made (so
    /// that whoever called this can undo it even when this future is cancelled half-way, by a
    /// start timeout). The engine's restart group exists from the start, so that a crash while
    /// the others attach is governed by this config's strategy; each instance joins it once it
    /// runs as this config asks. On failure the error is `(plugin name, why)`; detaching with
    /// rollback is then the caller's.
    pub(crate) async fn attach(
        &self,
        plan: &PluginPlan,
        registry: &Arc<Registry>,
        attachment: &mut Attachment,
    ) -> Result<(), (String, String)> {
        let _serial = self.shared.attach_lock.lock().await;
        let running: Vec<Running> = self
            .slots_in_order()
            .iter()
            .map(|slot| Running {
                configured: slot.configured(),
                serving: slot.is_serving(),
            })
            .collect();
        let changes = PluginChanges::between(&running, &plan.instances);
        tracing::debug!(changes = %changes.summary(), "attaching an engine's plugins");
        attachment.registry = registry.clone();
        let group = self.shared.groups.register(plan.strategy);
        attachment.group = Some(group);
        // Removals are left to stop_unused: an instance stops once no engine uses it.
        let made = changes
            .iter()
            .filter(|change| !matches!(change, PluginChange::Remove(_)));
        for change in made {
            attachment.applied.push(change.clone());
            if let Err(error) = self.make(change, registry).await {
                // It did not change.
                attachment.applied.pop();
                return Err((change.name().to_owned(), error));
            }
            if let Some(slot) = self.shared.slots.get(change.name()) {
                self.shared.groups.join(group, slot.clone());
            }
        }
        Ok(())
    }

    /// Detaches an engine: its restart group goes, and (with `rollback`, after a failed start)
    /// the changes its start made are undone, last first; then every instance no engine uses
    /// stops.
    pub(crate) async fn detach(&self, attachment: Attachment, rollback: bool, deadline: Instant) {
        let serial = self.shared.attach_lock.lock().await;
        if let Some(group) = attachment.group {
            self.shared.groups.unregister(group);
        }
        if rollback {
            // Each change is undone on its own: one that cannot be put back does not keep the
            // others from being put back.
            for change in attachment.applied.inverted().iter() {
                if let Err(error) = self.make(change, &attachment.registry).await {
                    let plugin = change.name();
                    tracing::warn!(%plugin, %error, "could not put the plugin back to its previous spec");
                }
            }
        }
        drop(serial);
        self.stop_unused(deadline).await;
    }

    /// Makes one change: builds and starts an added instance, reloads a changed one, records
    /// the spec of a kept one. A removal happens later, in [`PluginHost::stop_unused`].
    async fn make(&self, change: &PluginChange, registry: &Arc<Registry>) -> Result<(), String> {
        match change {
            PluginChange::Add(spec) => self.create(spec.clone(), registry).await,
            PluginChange::Change { to, .. } => self.reload(to).await,
            PluginChange::Keep { to, .. } => {
                if let Some(slot) = self.shared.slots.get(to.name()) {
                    slot.set_configured(to.clone());
                }
                Ok(())
            }
            PluginChange::Remove(_) => Ok(()),
        }
    }

    /// Stops every instance no attached engine uses, newest first, unless the host is held.
    async fn stop_unused(&self, deadline: Instant) {
        let _serial = self.shared.attach_lock.lock().await;
        // Checked under the lock: a hold taken while this waited for it still counts.
        if self.shared.holds.load(Ordering::SeqCst) > 0 {
            return;
        }
        for name in self.start_order().into_iter().rev() {
            if !self.shared.groups.uses(&name) {
                self.remove(&name, deadline).await;
            }
        }
    }

    /// Stops every instance, newest first, then the restarter, and waits (until `deadline`)
    /// for their last checkpoints to reach the disk. For shutdown.
    pub(crate) async fn shutdown(&self, deadline: Instant) {
        let _serial = self.shared.attach_lock.lock().await;
        self.shared.groups.clear();
        let slots = self.slots_in_order();
        for name in self.start_order().into_iter().rev() {
            self.remove(&name, deadline).await;
        }
        for slot in slots {
            slot.checkpoints().flush(deadline).await;
        }
        if let Some(restarter) = self.shared.restarter.get() {
            restarter.stop(None);
            let _ = restarter.wait(Some(Duration::from_secs(1))).await;
        }
    }

    fn start_order(&self) -> Vec<String> {
        self.shared
            .order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn slots_in_order(&self) -> Vec<Arc<PluginSlot>> {
        self.start_order()
            .iter()
            .filter_map(|name| self.shared.slots.get(name).map(|s| s.clone()))
            .collect()
    }

    /// Stops the instance `name` for good and forgets it; an instance that does not stop by
    /// `deadline` is killed.
    async fn remove(&self, name: &str, deadline: Instant) {
        let Some((_, slot)) = self.shared.slots.remove(name) else {
            return;
        };
        self.shared
            .order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n != name);
        // Taken now: the shutdown below unpublishes the instance before it stops it.
        let live = slot.current_core();
        if !slot.swap.shutdown(deadline).await {
            tracing::warn!(plugin = %name, "the plugin did not stop before its deadline; killing it");
            if let Some(core) = live {
                core.kill();
            }
        }
        tracing::info!(plugin = %name, "plugin stopped");
    }

    /// The restarter, spawned with the first instance.
    async fn restart_link(&self) -> Result<RestartLink, String> {
        let shared = &self.shared;
        let restarter = shared
            .restarter
            .get_or_try_init(|| async {
                let args = RestarterArgs {
                    groups: shared.groups.clone(),
                    actors: shared.actors.clone(),
                    escalation: shared.escalation.get().cloned(),
                };
                Actor::spawn(None, Restarter, args)
                    .await
                    .map(|(actor, _)| actor)
                    .map_err(|e| format!("cannot start the plugin restarter: {e}"))
            })
            .await?;
        Ok(RestartLink {
            restarter: restarter.clone(),
            actors: shared.actors.clone(),
        })
    }

    /// Builds and starts a new instance of `spec`.
    async fn create(
        &self,
        spec: Arc<PluginUnitSpec>,
        registry: &Arc<Registry>,
    ) -> Result<(), String> {
        let name = spec.name().to_owned();
        let slot = Arc::new(Slot::new(spec.swap.drain_timeout + spec.swap.start_timeout));
        let record = Arc::new(CrashRecord::default());
        let state = self.shared.state.get().cloned();
        let checkpoints = CheckpointStore::open(&name, state, DEFAULT_CHECKPOINT_LIMIT);
        let context = Arc::new(PluginUnitContext {
            registry: registry.clone(),
            link: self.restart_link().await?,
            record: record.clone(),
            slot: Arc::downgrade(&slot),
            type_guard: self.shared.type_guard.get().cloned(),
            swap: std::sync::OnceLock::new(),
            metrics: self.shared.metrics.get().cloned(),
            checkpoints: checkpoints.clone(),
            code: Arc::default(),
        });
        let mut args =
            SupervisorArgs::new(format!("plugin {name:?}"), context.clone(), slot.clone());
        args.build_timeout = spec.swap.build_timeout;
        let history = PluginHistory::observe(&mut args);
        let swap = HibernatingSupervisor::new(args);
        let _ = context.swap.set(swap.clone());
        let (env, kept) = (self.shared.env.clone(), (checkpoints, history));
        let plugin = Arc::new(PluginSlot::new(spec.clone(), swap, record, kept, env));
        // Registered before it starts, so that a reload waiting for the lock finds it.
        self.shared.slots.insert(name.clone(), plugin.clone());
        self.shared
            .order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let started = plugin.reload(&spec, Origin::Initial).await;
        plugin.follow_code();
        if started.is_err() {
            self.remove(&name, Instant::now() + spec.swap.stop_timeout)
                .await;
        }
        started
    }

    /// Reloads the instance of `spec`'s name to `spec`, for an engine config.
    async fn reload(&self, spec: &Arc<PluginUnitSpec>) -> Result<(), String> {
        let slot = self
            .shared
            .slots
            .get(spec.name())
            .map(|s| s.clone())
            .ok_or_else(|| "it is not running".to_owned())?;
        let reloaded = slot.reload(spec, Origin::Api).await;
        slot.follow_code();
        reloaded.map_err(|why| format!("its reload did not activate: {why}"))?;
        slot.set_configured(spec.clone());
        Ok(())
    }
}

impl PluginCalls for PluginHost {
    fn call<'a>(
        &'a self,
        plugin: &'a str,
        op: &'a str,
        args: Value,
    ) -> futures::future::BoxFuture<'a, Result<Value, PluginError>> {
        Box::pin(async move {
            match self.get(plugin) {
                Some(plugin) => plugin.call(op, args).await,
                None => Err(PluginError::Unavailable(format!(
                    "no plugin named {plugin:?} is running"
                ))),
            }
        })
    }
}
