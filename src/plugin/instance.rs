//! A plugin instance as a swappable unit.
//!
//! [`PluginInstance`] is what a plugin's slot publishes. Building one constructs the plugin
//! (no outside effects); starting it spawns the plugin's actor ([`super::core`]); a per-plugin
//! reload swaps in a whole new instance through the generic swap protocol, draining the old one
//! and handing its exported state to the new one before it is published.
//!
//! What is handed over is a [`Checkpoint`]: the old instance's export, or, when it has none
//! (it crashed, failed, or exports nothing), the slot's latest checkpoint. An export the new
//! instance refuses rolls the reload back, as it always has; a checkpoint it refuses is logged
//! and counted, and it starts afresh: the old instance had nothing better to give.

use std::sync::{Arc, Weak};

use serde::Serialize;
use sha2::{Digest, Sha256};
use swapvisor_actors::guard;
use swapvisor_actors::{BuildFailure, Slot, Stage, SwapSettings, Unit, UnitError};
use tokio::time::Instant;

use super::actor;
use super::checkpoint::{Checkpoint, Identity, ImportCause};
use super::checkpoints::CheckpointStore;
use super::core::{CrashRecord, InstanceCore, InstanceSlot, Phase, Serving};
use super::link::RestartLink;
use super::messages::PluginMsg;
use super::spec::PluginUnitSpec;
use crate::config::place;
use crate::extension::plugin::{Plugin, PluginBuild};
use crate::registry::{Registry, Types};

/// Checks the types a reloaded plugin instance would provide against what the live engine
/// uses: `(instance name, types) -> Ok or why not`.
pub(crate) type TypeGuard = Arc<dyn Fn(&str, &Types) -> Result<(), String> + Send + Sync>;

/// What every build of one plugin slot shares.
pub struct PluginUnitContext {
    pub(super) registry: Arc<Registry>,
    pub(super) link: RestartLink,
    /// The slot's crash record, shared by all its instances so that a reload does not reset it.
    pub(super) record: Arc<CrashRecord>,
    pub(super) slot: Weak<Slot<PluginInstance>>,
    pub(super) type_guard: Option<TypeGuard>,
    /// The slot's swap Supervisor, for escalations during a per-plugin probation.
    pub(super) swap: std::sync::OnceLock<swapvisor_actors::HibernatingSupervisor<PluginInstance>>,
    /// Where its instances register their metrics.
    pub(super) metrics: Option<Arc<crate::metrics::ExtensionStore>>,
    /// The slot's checkpoints, shared by its instances.
    pub(super) checkpoints: Arc<CheckpointStore>,
    /// The code the slot keeps: its live and previous copies.
    pub(super) code: Arc<crate::extension::plugin::CodeHold>,
}

impl std::fmt::Debug for PluginUnitContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginUnitContext")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// The core sees its slot through this: the slot's types are defined above the core.
impl InstanceSlot for PluginUnitContext {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn record(&self) -> &CrashRecord {
        &self.record
    }

    fn publishes(&self, core: &Arc<InstanceCore>) -> bool {
        self.slot
            .upgrade()
            .and_then(|slot| slot.current())
            .is_some_and(|live| Arc::ptr_eq(live.core(), core))
    }

    fn publishes_other(&self, core: &Arc<InstanceCore>) -> bool {
        self.slot
            .upgrade()
            .and_then(|slot| slot.current())
            .is_some_and(|live| !Arc::ptr_eq(live.core(), core))
    }

    fn checkpoints(&self) -> &Arc<CheckpointStore> {
        &self.checkpoints
    }

    fn code(&self) -> &Arc<crate::extension::plugin::CodeHold> {
        &self.code
    }

    fn metrics(&self) -> Option<&Arc<crate::metrics::ExtensionStore>> {
        self.metrics.as_ref()
    }

    fn escalate(&self, reason: String) -> futures::future::BoxFuture<'_, bool> {
        Box::pin(async move {
            match self.swap.get() {
                Some(swap) => swap.escalate(reason).await,
                None => false,
            }
        })
    }
}

/// One plugin instance: the unit a plugin slot publishes.
pub struct PluginInstance {
    core: Arc<InstanceCore>,
    /// Its slot's context: how its actor is linked to the restarter.
    context: Arc<PluginUnitContext>,
    /// Its types are checked against the live config once it has started: at build they were
    /// not known yet ([`Plugin::types_known`]).
    check_types_at_start: bool,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

/// What try-activate reports for a plugin: its kind and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginSummary {
    /// The plugin kind, such as `counter`.
    pub kind: String,
    /// The version the kind's code reports.
    pub version: String,
}

/// Builds a fresh plugin of `unit`'s kind with `registry`'s factory, running the code `unit`
/// pins, if any.
pub(crate) fn build_plugin(
    registry: &Registry,
    unit: &PluginUnitSpec,
) -> Result<Box<dyn Plugin>, BuildFailure> {
    let spec = &unit.spec;
    let factory = registry.plugin_factory(&spec.kind).ok_or_else(|| {
        BuildFailure::new(
            Stage::Validate,
            crate::config::unknown_name(
                "plugin type",
                &spec.kind,
                "registered",
                registry.plugin_kinds(),
            ),
        )
    })?;
    let at = place::field(&format!("plugin {:?}", spec.name), "config");
    let build = PluginBuild {
        name: &spec.name,
        config: &spec.config,
        place: &at,
        code: unit.code.as_deref(),
    };
    guard::run_sync(|| factory.build(&build))
        .map_err(|interrupted| {
            BuildFailure::new(Stage::Build, format!("the plugin factory {interrupted}"))
        })?
        .map_err(|errors| BuildFailure::new(Stage::Validate, errors.to_string()))
}

impl PluginInstance {
    /// The part its actor and the restarter share.
    pub(crate) fn core(&self) -> &Arc<InstanceCore> {
        &self.core
    }

    /// The plugin's version.
    pub fn version(&self) -> &str {
        &self.core.version
    }

    /// The identity of the code it runs (a process plugin's executable hash), if it has one.
    pub fn code(&self) -> Option<&str> {
        self.unit_spec().code.as_deref()
    }

    /// The spec this instance was built from.
    pub fn unit_spec(&self) -> &Arc<PluginUnitSpec> {
        self.core.unit_spec()
    }

    /// The running actor, if it is serving now.
    fn running(&self) -> Option<Serving> {
        match self.core.phase() {
            Phase::Running(serving) => Some(serving),
            _ => None,
        }
    }

    /// Who its checkpoints say took them, as it runs now.
    pub(crate) fn identity(&self) -> Identity {
        let started = self.running().and_then(|serving| serving.version);
        self.core
            .identity(started.as_deref().unwrap_or(&self.core.version))
    }

    /// Offers `candidates` to the running plugin (see [`PluginMsg::Offer`]): the sequence
    /// number of the one it took, or why none.
    pub(crate) async fn offer(
        &self,
        candidates: Vec<Checkpoint>,
        cause: ImportCause,
        deadline: Instant,
    ) -> Result<u64, String> {
        let name = self.core.name();
        let Some(serving) = self.running() else {
            return Err(format!("plugin {name:?} is not running"));
        };
        let wait = deadline.saturating_duration_since(Instant::now()) + GRACE;
        let offer = |reply| PluginMsg::Offer {
            candidates,
            cause,
            deadline,
            reply,
        };
        match serving.actor.call(offer, Some(wait)).await {
            Ok(ractor::rpc::CallResult::Success(offered)) => offered,
            Ok(ractor::rpc::CallResult::Timeout) => Err(format!(
                "plugin {name:?} did not take a checkpoint within {wait:?}"
            )),
            _ => Err(format!("plugin {name:?} exited before taking a checkpoint")),
        }
    }
}

/// Checks the types `plugin` contributes against what the live engine uses, when the slot
/// has a guard.
fn check_types(context: &PluginUnitContext, name: &str, plugin: &dyn Plugin) -> Result<(), String> {
    let Some(guard) = &context.type_guard else {
        return Ok(());
    };
    let mut provided = Types::new(&format!("plugin {}", plugin.kind()));
    plugin.register(&mut provided).map_err(|e| e.to_string())?;
    guard(name, &provided)
}

/// How much longer than its own deadline a plugin actor's answer is waited for.
const GRACE: std::time::Duration = std::time::Duration::from_millis(200);

impl Unit for PluginInstance {
    type Spec = PluginUnitSpec;
    type Context = PluginUnitContext;
    type Summary = PluginSummary;
    type State = Checkpoint;

    async fn build(
        spec: Arc<PluginUnitSpec>,
        context: Arc<PluginUnitContext>,
    ) -> Result<Self, BuildFailure> {
        let plugin = build_plugin(&context.registry, &spec)?;
        let guarded = spec.guard_types && context.type_guard.is_some();
        let check_types_at_start = guarded && !plugin.types_known();
        if guarded && !check_types_at_start {
            check_types(&context, spec.name(), &*plugin)
                .map_err(|message| BuildFailure::new(Stage::Validate, message))?;
        }
        Ok(PluginInstance {
            core: Arc::new(InstanceCore::new(spec, plugin, context.clone())),
            context,
            check_types_at_start,
        })
    }

    async fn start(&self, _deadline: Instant) -> Result<(), UnitError> {
        let prototype = self
            .core
            .prototype
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let checkpoints = &self.context.checkpoints;
        let (plugin, import) = match prototype {
            Some(plugin) => {
                let first = checkpoints.take_import_at_start();
                (plugin, first.then_some(ImportCause::Start))
            }
            // Started again after a stop (a stop-first restore): afresh, or from the latest
            // checkpoint.
            None => (
                build_plugin(self.core.registry(), self.unit_spec()).map_err(UnitError::new)?,
                (!checkpoints.is_empty()).then_some(ImportCause::Restart),
            ),
        };
        let spawned = actor::spawn(&self.core, plugin, &self.context.link, import).await;
        spawned.map_err(|e| {
            UnitError::new(format!(
                "plugin {:?} failed to start: {e}",
                self.core.name()
            ))
        })?;
        if self.check_types_at_start {
            // Its start told what it offers (remembered per code): built again, it knows, and
            // the swap discards this instance when the live config needs more.
            let known =
                build_plugin(self.core.registry(), self.unit_spec()).map_err(UnitError::new)?;
            check_types(&self.context, self.core.name(), &*known).map_err(UnitError::new)?;
        }
        Ok(())
    }

    async fn stop(&self, deadline: Instant) -> Result<(), UnitError> {
        self.core
            .stop_actor(deadline, Phase::Stopped)
            .await
            .map_err(UnitError::new)
    }

    fn spec(&self) -> Arc<PluginUnitSpec> {
        self.unit_spec().clone()
    }

    fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(&self.unit_spec().spec).unwrap_or_default();
        let mut digest = Sha256::new();
        digest.update(&canonical);
        // The same config running other code is another instance.
        digest.update(self.code().unwrap_or_default());
        let hash: String = digest
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}:{hash}", self.core.kind_version())
    }

    fn summary(&self) -> PluginSummary {
        PluginSummary {
            kind: self.unit_spec().spec.kind.clone(),
            version: self.version().to_owned(),
        }
    }

    fn swap_settings(&self) -> SwapSettings {
        self.unit_spec().swap
    }

    fn hands_over_state(&self) -> bool {
        true
    }

    async fn export_state(&self, deadline: Instant) -> Result<Option<Checkpoint>, UnitError> {
        let checkpoints = &self.context.checkpoints;
        let kind = &self.unit_spec().spec.kind;
        // Crashed or stopped: its state went with the crash, all but its latest checkpoint.
        let Some(serving) = self.running() else {
            return Ok(checkpoints.latest_of(kind));
        };
        let actor = serving.actor;
        let name = self.core.name();
        // The actor gives up on the export itself at the swap's deadline, so that it is free to
        // serve when a rolled-back swap publishes it again; this call waits a moment longer for
        // that answer. (Bounded by the stop timeout instead, it answered no call for up to 9 s
        // after a start-first swap had given up at a 1 s start timeout.)
        let limit = deadline.saturating_duration_since(Instant::now());
        let wait = limit + std::time::Duration::from_millis(200);
        match actor
            .call(|reply| PluginMsg::Export(deadline, reply), Some(wait))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(Some(state)))) => {
                Ok(Some(checkpoints.exported(&self.identity(), state)))
            }
            Ok(ractor::rpc::CallResult::Success(Ok(None))) => Ok(checkpoints.latest_of(kind)),
            Ok(ractor::rpc::CallResult::Success(Err(error))) => Err(UnitError::new(format!(
                "plugin {name:?} could not hand over its state: {error}"
            ))),
            Ok(ractor::rpc::CallResult::Timeout) => Err(UnitError::new(format!(
                "plugin {name:?} did not hand over its state within {limit:?}"
            ))),
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(UnitError::new(format!(
                "plugin {name:?} exited before handing over its state"
            ))),
        }
    }

    async fn import_state(&self, state: Checkpoint) -> Result<(), UnitError> {
        let name = self.core.name();
        let start_timeout = self.unit_spec().swap.start_timeout;
        if !state.exported {
            // Offered, not insisted on: the predecessor had nothing better to give.
            let candidates = self
                .context
                .checkpoints
                .candidates(&self.identity(), Some(state));
            let deadline = Instant::now() + start_timeout;
            if let Err(why) = self.offer(candidates, ImportCause::Reload, deadline).await {
                tracing::warn!(plugin = %name, "starting afresh: {why}");
            }
            return Ok(());
        }
        let Some(serving) = self.running() else {
            return Err(UnitError::new(format!("plugin {name:?} is not running")));
        };
        match serving
            .actor
            .call(
                |reply| PluginMsg::Migrate(state.state, reply),
                Some(start_timeout),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => Ok(()),
            Ok(ractor::rpc::CallResult::Success(Err(error))) => Err(UnitError::new(format!(
                "plugin {name:?} refused the previous state: {error}"
            ))),
            _ => Err(UnitError::new(format!(
                "plugin {name:?} did not take the previous state"
            ))),
        }
    }
}
