//! The plugin host: every plugin instance of a runtime, by name, outliving the engines that use
//! them.
//!
//! Plugins are shared by engines the way listeners are: an engine *attaches* to the instances
//! its config names when it starts, and *detaches* when it stops. An instance whose spec is the
//! same in the new config keeps running, with its state; one whose spec changed is reloaded
//! through its slot's swap protocol (state migrated); a new one is started; one no engine
//! attaches to any more is stopped. A failed engine start detaches with rollback, which
//! reloads changed instances back to their previous spec.
//!
//! Each instance has its own slot, with its own swap Supervisor and Active, and a stable
//! [`PluginRef`]: calls take a lease on whatever instance is live, so a reload drains the old
//! instance before handing its state on, and calls arriving meanwhile wait at the gate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use ractor::{Actor, ActorRef};
use serde::Serialize;
use serde_json::Value;
use swapvisor_actors::{
    HibernatingSupervisor, Origin, ReloadOutcome, ReloadRecord, ReloadRequest, Slot,
    SupervisorArgs, SupervisorMsg,
};
use tokio::time::Instant;

use super::instance::{InstanceCore, Phase, PluginInstance, PluginUnitContext, PluginUnitSpec};
use super::restart::{RestartMsg, RestartSupervisor};
use super::{PluginCall, PluginError};
use crate::config::RestartStrategy;
use crate::registry::Registry;

/// How long a call waits for an answer (or for a restarting plugin) before it fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Every plugin instance of a runtime. Cheap to clone.
#[derive(Clone, Default)]
pub struct PluginHost {
    shared: Arc<HostShared>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.shared.start_order())
            .finish()
    }
}

type Escalation = Arc<dyn Fn(String) + Send + Sync>;
type TypeGuard = Arc<dyn Fn(&str, &Registry) -> Result<(), String> + Send + Sync>;

#[derive(Default)]
pub(crate) struct HostShared {
    entries: DashMap<String, Arc<Entry>>,
    order: Mutex<Vec<String>>,
    strategy: Mutex<Option<RestartStrategy>>,
    restart: tokio::sync::OnceCell<ActorRef<RestartMsg>>,
    /// Serializes attach and detach, so that lease counts and specs change one engine at a time.
    attach_lock: tokio::sync::Mutex<()>,
    holds: AtomicUsize,
    /// Every running plugin actor, to find its instance when it fails outside a call.
    pub(crate) actors: DashMap<ractor::ActorId, std::sync::Weak<InstanceCore>>,
    escalation: OnceLock<Escalation>,
    type_guard: OnceLock<TypeGuard>,
}

pub(crate) struct Entry {
    name: Arc<str>,
    slot: Arc<Slot<PluginInstance>>,
    /// The slot's swap Supervisor, awake only while a reload (or an embedder) needs it.
    swap: HibernatingSupervisor<PluginInstance>,
    /// The spec the engine config last asked for (a per-plugin reload may run another).
    configured: Mutex<Arc<PluginUnitSpec>>,
    leases: AtomicUsize,
}

/// A stable address for one plugin instance: it survives the instance's crashes, restarts and
/// reloads. Cheap to clone.
#[derive(Clone)]
pub struct PluginRef {
    entry: Arc<Entry>,
}

impl std::fmt::Debug for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PluginRef").field(&self.entry.name).finish()
    }
}

impl PluginRef {
    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Calls `op` with `args` on whichever instance is live, and waits for the answer. During a
    /// reload the call waits at the gate and is served by the new instance; during a restart it
    /// waits for the restarted one.
    pub async fn call(&self, op: &str, args: Value) -> Result<Value, PluginError> {
        let instance = self.entry.slot.acquire().await.map_err(|e| {
            PluginError::Unavailable(format!("plugin {:?} is not running: {e}", self.name()))
        })?;
        instance.call(PluginCall::new(op, args), CALL_TIMEOUT).await
    }
}

/// Where a plugin instance is, as shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Being started or swapped.
    Starting,
    /// Serving calls.
    Running,
    /// Crashed; a restart is scheduled.
    Restarting,
    /// Crashed beyond its restart intensity (or not restarted by its policy).
    Failed,
    /// Stopped.
    Stopped,
}

/// One plugin instance as shown in status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// The instance's name.
    pub name: String,
    /// Its plugin kind.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The plugin's version.
    pub version: String,
    /// Where it is.
    pub state: PluginState,
    /// How many times its slot has been activated (1, plus one per reload).
    pub generation: u64,
    /// How many times it was restarted after a crash (its own or a sibling's, per strategy).
    pub restarts: u32,
    /// Its most recent error.
    pub last_error: Option<String>,
}

/// The instances one engine attached to, for detaching them again. Opaque.
#[derive(Debug, Default)]
pub struct Attachment {
    /// In start order.
    names: Vec<String>,
    /// Instances this attachment reloaded, with the spec they ran before.
    changed: Vec<(String, Arc<PluginUnitSpec>)>,
}

impl Attachment {
    /// The instance being attached last (the one a timeout interrupted).
    pub(crate) fn last_name(&self) -> String {
        self.names.last().cloned().unwrap_or_default()
    }
}

/// Keeps instances that no engine uses any more alive until dropped (a stop-first swap).
pub struct PluginHold {
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

impl HostShared {
    pub(crate) fn current_core(&self, name: &str) -> Option<Arc<InstanceCore>> {
        let entry = self.entries.get(name)?.clone();
        entry.slot.current().map(|instance| instance.core().clone())
    }

    pub(crate) fn start_order(&self) -> Vec<String> {
        self.order.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn strategy(&self) -> RestartStrategy {
        self.strategy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(RestartStrategy::OneForOne)
    }

    pub(crate) fn escalate(&self, reason: String) {
        match self.escalation.get() {
            Some(escalate) => escalate(reason),
            None => tracing::error!(%reason, "plugin escalation with no supervisor to escalate to"),
        }
    }

    pub(crate) fn check_types(&self, name: &str, provided: &Registry) -> Result<(), String> {
        match self.type_guard.get() {
            Some(guard) => guard(name, provided),
            None => Ok(()),
        }
    }

    pub(crate) async fn restart_supervisor(
        self: &Arc<Self>,
    ) -> Result<ActorRef<RestartMsg>, String> {
        let weak = Arc::downgrade(self);
        self.restart
            .get_or_try_init(|| async move {
                Actor::spawn(None, RestartSupervisor, weak)
                    .await
                    .map(|(actor, _)| actor)
                    .map_err(|e| format!("cannot start the plugin restart supervisor: {e}"))
            })
            .await
            .cloned()
    }
}

impl PluginHost {
    /// A stable reference to the instance named `name`, if one runs.
    pub fn get(&self, name: &str) -> Option<PluginRef> {
        self.shared.entries.get(name).map(|entry| PluginRef {
            entry: entry.clone(),
        })
    }

    /// Calls `op` on the instance named `name`.
    pub async fn call(&self, name: &str, op: &str, args: Value) -> Result<Value, PluginError> {
        match self.get(name) {
            Some(plugin) => plugin.call(op, args).await,
            None => Err(PluginError::Unavailable(format!(
                "no plugin named {name:?} is running"
            ))),
        }
    }

    /// The swap Supervisor of the instance named `name`: send it `SupervisorMsg::Reload` with a
    /// [`PluginUnitSpec`] to reload that plugin alone.
    pub async fn supervisor_of(
        &self,
        name: &str,
    ) -> Option<ActorRef<SupervisorMsg<PluginInstance>>> {
        let entry = self.shared.entries.get(name)?.clone();
        entry.swap.supervisor().await.ok()
    }

    /// True when an instance named `name` runs.
    pub fn contains(&self, name: &str) -> bool {
        self.shared.entries.contains_key(name)
    }

    /// Reloads the instance named `name` to `spec` through its slot's swap protocol.
    pub async fn reload(
        &self,
        name: &str,
        spec: PluginUnitSpec,
        origin: Origin,
    ) -> Option<ReloadRecord> {
        let entry = self.shared.entries.get(name)?.clone();
        entry.reload(spec, origin).await.ok()
    }

    /// Every instance, in start order.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.shared
            .start_order()
            .into_iter()
            .filter_map(|name| {
                let entry = self.shared.entries.get(&name)?.clone();
                let configured = entry
                    .configured
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let live = entry.slot.current();
                let (state, version, restarts, last_error, type_name) = match &live {
                    Some(instance) => {
                        let state = match &*instance.phase.borrow() {
                            Phase::Idle | Phase::Starting => PluginState::Starting,
                            Phase::Running(_) => PluginState::Running,
                            Phase::Restarting => PluginState::Restarting,
                            Phase::Failed(_) => PluginState::Failed,
                            Phase::Stopped => PluginState::Stopped,
                        };
                        (
                            state,
                            instance.version().to_owned(),
                            instance.record.restarts.load(Ordering::SeqCst),
                            instance
                                .record
                                .last_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .clone(),
                            instance.unit_spec().spec.type_name.clone(),
                        )
                    }
                    None => (
                        PluginState::Starting,
                        String::new(),
                        0,
                        None,
                        configured.spec.type_name.clone(),
                    ),
                };
                Some(PluginStatus {
                    name,
                    type_name,
                    version,
                    state,
                    generation: entry.slot.generation().unwrap_or(0),
                    restarts,
                    last_error,
                })
            })
            .collect()
    }

    /// Keeps instances that lose their last engine alive until the hold is dropped.
    pub fn hold(&self) -> PluginHold {
        self.shared.holds.fetch_add(1, Ordering::SeqCst);
        PluginHold { host: self.clone() }
    }

    /// Routes escalations (crash loops) to `escalate`, once.
    pub fn set_escalation(&self, escalate: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.shared.escalation.set(Arc::new(escalate));
    }

    /// Checks per-plugin reloads with `guard(instance name, types the new instance provides)`,
    /// once.
    pub fn set_type_guard(
        &self,
        guard: impl Fn(&str, &Registry) -> Result<(), String> + Send + Sync + 'static,
    ) {
        let _ = self.shared.type_guard.set(Arc::new(guard));
    }

    /// Attaches an engine to the instances `specs` names, in order: starting new ones,
    /// reloading changed ones, sharing unchanged ones. Progress is recorded in `attachment`
    /// as it is made, before each step, so that whoever called this can detach (with
    /// rollback) what was attached even when this future is cancelled half-way (a start
    /// timeout). On failure the error is `(plugin name, why)`; detaching is then the caller's.
    pub(crate) async fn attach(
        &self,
        specs: &[Arc<PluginUnitSpec>],
        strategy: RestartStrategy,
        registry: &Arc<Registry>,
        attachment: &mut Attachment,
    ) -> Result<(), (String, String)> {
        let _serial = self.shared.attach_lock.lock().await;
        *self
            .shared
            .strategy
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(strategy);
        for spec in specs {
            let name = spec.spec.name.clone();
            match self.shared.entries.get(&name).map(|e| e.clone()) {
                None => {
                    attachment.names.push(name.clone());
                    if let Err(error) = self.create(spec.clone(), registry).await {
                        // `create` removed what it made.
                        attachment.names.pop();
                        return Err((name, error));
                    }
                }
                Some(entry) => {
                    entry.leases.fetch_add(1, Ordering::SeqCst);
                    attachment.names.push(name.clone());
                    let configured = entry
                        .configured
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    let failed = entry.slot.current().is_none_or(|instance| {
                        matches!(*instance.phase.borrow(), Phase::Failed(_) | Phase::Stopped)
                    });
                    if *configured == **spec && !failed {
                        continue;
                    }
                    attachment.changed.push((name.clone(), configured));
                    if let Err(error) = self.reload_entry(&entry, spec.clone()).await {
                        // It did not change; its lease is given back when the caller detaches.
                        attachment.changed.pop();
                        return Err((name, error));
                    }
                }
            }
        }
        Ok(())
    }

    /// Detaches an engine: newest first, each instance loses a lease and stops when it has
    /// none (unless held). With `rollback`, instances the attachment reloaded go back to their
    /// previous spec first.
    pub(crate) async fn detach(&self, attachment: Attachment, rollback: bool, deadline: Instant) {
        let _serial = self.shared.attach_lock.lock().await;
        for name in attachment.names.iter().rev() {
            let Some(entry) = self.shared.entries.get(name).map(|e| e.clone()) else {
                continue;
            };
            if rollback
                && let Some((_, previous)) = attachment.changed.iter().find(|(n, _)| n == name)
            {
                if let Err(error) = self.reload_entry(&entry, previous.clone()).await {
                    tracing::warn!(plugin = %name, %error, "could not put the plugin back to its previous spec");
                }
            }
            entry.leases.fetch_sub(1, Ordering::SeqCst);
        }
        drop(_serial);
        self.stop_unused(deadline).await;
    }

    /// Stops every instance with no lease, newest first, unless the host is held.
    async fn stop_unused(&self, deadline: Instant) {
        let _serial = self.shared.attach_lock.lock().await;
        // Checked under the lock: a hold taken while this waited for it still counts.
        if self.shared.holds.load(Ordering::SeqCst) > 0 {
            return;
        }
        let unused: Vec<String> = self
            .shared
            .start_order()
            .into_iter()
            .rev()
            .filter(|name| {
                self.shared
                    .entries
                    .get(name)
                    .is_some_and(|e| e.leases.load(Ordering::SeqCst) == 0)
            })
            .collect();
        for name in unused {
            self.remove(&name, deadline).await;
        }
    }

    /// Stops every instance, newest first, then the restart supervisor. For shutdown.
    pub async fn shutdown(&self, deadline: Instant) {
        let _serial = self.shared.attach_lock.lock().await;
        for name in self.shared.start_order().into_iter().rev() {
            self.remove(&name, deadline).await;
        }
        if let Some(restart) = self.shared.restart.get() {
            restart.stop(None);
            let _ = restart.wait(Some(Duration::from_secs(1))).await;
        }
    }

    async fn remove(&self, name: &str, deadline: Instant) {
        let Some((_, entry)) = self.shared.entries.remove(name) else {
            return;
        };
        self.shared
            .order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n != name);
        // Taken now: the shutdown below unpublishes the instance before it stops it.
        let live = entry.slot.current();
        if !entry.swap.shutdown(deadline).await {
            tracing::warn!(plugin = %name, "the plugin did not stop before its deadline; killing it");
            if let Some(instance) = live
                && let Phase::Running(actor) = instance.phase.send_replace(Phase::Stopped)
            {
                actor.kill();
            }
        }
        tracing::info!(plugin = %name, "plugin stopped");
    }

    async fn create(
        &self,
        spec: Arc<PluginUnitSpec>,
        registry: &Arc<Registry>,
    ) -> Result<(), String> {
        let name = spec.spec.name.clone();
        let context = Arc::new(PluginUnitContext {
            registry: registry.clone(),
            host: Arc::downgrade(&self.shared),
            record: Arc::default(),
        });
        let slot = Arc::new(Slot::new(spec.swap.drain_timeout + spec.swap.start_timeout));
        let mut args = SupervisorArgs::new(format!("plugin {name:?}"), context, slot.clone());
        args.build_timeout = spec.swap.build_timeout;
        let entry = Arc::new(Entry {
            name: Arc::from(name.as_str()),
            slot,
            swap: HibernatingSupervisor::new(args),
            configured: Mutex::new(spec.clone()),
            leases: AtomicUsize::new(1),
        });
        // Registered before it starts, so that its crash reports find it.
        self.shared.entries.insert(name.clone(), entry.clone());
        self.shared
            .order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let mut request = (*spec).clone();
        request.guard_types = false;
        match entry.reload(request, Origin::Initial).await {
            Ok(record) if record.outcome.is_activated() => Ok(()),
            other => {
                let why = describe(other);
                entry.leases.store(0, Ordering::SeqCst);
                self.remove(&name, Instant::now() + spec.swap.stop_timeout)
                    .await;
                Err(why)
            }
        }
    }

    async fn reload_entry(
        &self,
        entry: &Arc<Entry>,
        spec: Arc<PluginUnitSpec>,
    ) -> Result<(), String> {
        let mut request = (*spec).clone();
        request.guard_types = false;
        match entry.reload(request, Origin::Api).await {
            Ok(record) if record.outcome.is_activated() => {
                *entry.configured.lock().unwrap_or_else(|e| e.into_inner()) = spec;
                Ok(())
            }
            other => Err(format!("its reload did not activate: {}", describe(other))),
        }
    }
}

impl Entry {
    /// Runs one reload through the slot's swap protocol.
    async fn reload(&self, spec: PluginUnitSpec, origin: Origin) -> Result<ReloadRecord, String> {
        let request = ReloadRequest::new(spec).from(origin);
        self.swap.reload(request).await.map_err(|e| e.to_string())
    }
}

fn describe<E: std::fmt::Display>(record: Result<ReloadRecord, E>) -> String {
    match record {
        Ok(record) => match &record.outcome {
            ReloadOutcome::Rejected { error, .. } | ReloadOutcome::RolledBack { error } => {
                error.clone()
            }
            other => other.name().to_owned(),
        },
        Err(error) => error.to_string(),
    }
}
