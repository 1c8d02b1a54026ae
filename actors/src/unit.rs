//! The thing being swapped: a *unit* that can be built, started and stopped.
//!
//! The swap protocol is the same whether the unit is a whole engine or one plugin instance. A
//! unit type says how to build one from a spec and what its start and stop do; the actors do
//! the rest (serialization, timeouts, panics, rollback, draining, handover).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::SwapMode;

/// Something the swap protocol can replace while it serves.
///
/// The contract, which the actors rely on:
/// - [`build`](Unit::build) has **no outside effects**: it binds nothing, spawns nothing and
///   starts no timer. A built unit may be dropped without being started (try-activate does
///   exactly that).
/// - [`start`](Unit::start) acquires resources and begins serving. It should give up by
///   `deadline` and, on failure, release what it took.
/// - [`stop`](Unit::stop) finishes work until `deadline`, then releases resources. A stopped
///   unit may be started again: stop-first swaps restore the previous unit that way.
/// - State handover is optional: when [`export_state`](Unit::export_state) returns a state, the
///   new unit gets it through [`import_state`](Unit::import_state) before it is published. A
///   failed export or import rolls the swap back, in both modes: state is never dropped.
pub trait Unit: Sized + Send + Sync + 'static {
    /// An immutable description of a unit (a parsed config, a plugin spec).
    type Spec: Send + Sync + 'static;
    /// What building needs besides the spec (registries, shared services).
    type Context: Send + Sync + 'static;
    /// What a successful try-activate reports.
    type Summary: Clone + Send + Sync + fmt::Debug + 'static;
    /// State handed from the old unit to the new one (use `()` when there is none).
    type State: Send + 'static;

    /// Builds a unit from `spec`, with no outside effects.
    fn build(
        spec: Arc<Self::Spec>,
        context: Arc<Self::Context>,
    ) -> impl Future<Output = Result<Self, BuildFailure>> + Send;

    /// Starts serving; gives up by `deadline`.
    fn start(&self, deadline: Instant) -> impl Future<Output = Result<(), UnitError>> + Send;

    /// Stops serving; finishes in-flight work until `deadline`.
    fn stop(&self, deadline: Instant) -> impl Future<Output = Result<(), UnitError>> + Send;

    /// The spec to rebuild this unit from (the last-known-good spec after it activates).
    fn spec(&self) -> Arc<Self::Spec>;

    /// A short content identity shown in status, such as a config hash.
    fn fingerprint(&self) -> String;

    /// What this unit would serve, when that can be told: two units with the same identity
    /// serve exactly the same (an engine's is the hash of its config with `${VAR}` expanded).
    /// A reload to a unit whose identity is the live one's answers
    /// [`ReloadOutcome::Unchanged`](crate::ReloadOutcome::Unchanged) and swaps nothing, the way
    /// Caddy and `kubectl apply` treat an identical config. `None` (the default) always swaps,
    /// so a reload can restart a unit on purpose.
    fn identity(&self) -> Option<String> {
        None
    }

    /// What this unit changes against the one live when it was built, for units made of named
    /// parts (see [`Changes`](crate::Changes)). Recorded with the reload; `None` (the default)
    /// when the unit cannot tell.
    fn changes(&self) -> Option<crate::Changes> {
        None
    }

    /// What try-activate reports for this unit.
    fn summary(&self) -> Self::Summary;

    /// How this unit wants to be swapped in (mode and timeouts).
    fn swap_settings(&self) -> SwapSettings;

    /// True when this unit takes its predecessor's state: the swap then drains the old unit
    /// *before* publishing the new one, so no call is served by the old unit after its state
    /// was exported.
    fn hands_over_state(&self) -> bool {
        false
    }

    /// Takes the state to hand to a successor (`None`: there is none). Called after this unit
    /// has drained. An error, a panic or running past `deadline` (the swap's own, which it
    /// enforces too) rolls the swap back: this unit serves on with its state, so anything it
    /// does to bound the export should end by `deadline`.
    fn export_state(
        &self,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<Self::State>, UnitError>> + Send {
        let _ = deadline;
        async { Ok(None) }
    }

    /// Receives the predecessor's state before this unit is published.
    fn import_state(
        &self,
        state: Self::State,
    ) -> impl Future<Output = Result<(), UnitError>> + Send {
        let _ = state;
        async { Ok(()) }
    }

    /// Something to hold for the length of a stop-first swap so that shared resources released
    /// by the old unit stay available to the new one (a listener pool keeps sockets open).
    fn hold_resources(&self) -> Option<Box<dyn Any + Send + Sync>> {
        None
    }
}

/// How a unit is swapped in: read from the *new* unit, so a config says how it is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapSettings {
    /// Start-first or stop-first.
    pub mode: SwapMode,
    /// Longest time the next build may take (applies to builds while this unit is live).
    pub build_timeout: Duration,
    /// Longest time a start may take.
    pub start_timeout: Duration,
    /// Longest time a graceful stop may take.
    pub stop_timeout: Duration,
    /// How long the replaced unit may finish in-flight work before it is stopped.
    pub drain_timeout: Duration,
    /// After this unit activates, how long an escalation (a crash loop below it) reverts to
    /// the previous spec. `None`: never.
    pub probation: Option<Duration>,
}

impl Default for SwapSettings {
    fn default() -> Self {
        Self {
            mode: SwapMode::StartFirst,
            build_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            probation: None,
        }
    }
}

/// The stage at which a spec was refused before anything was touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Stage {
    /// The input is not a document at all.
    Parse,
    /// The document is not a valid spec.
    Validate,
    /// A valid spec that could not be constructed (an error, a panic or a timeout in build).
    Build,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Parse => "parse",
            Stage::Validate => "validate",
            Stage::Build => "build",
        })
    }
}

/// Why a build failed, and at which stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildFailure {
    /// Where it failed: parse, validate or build.
    pub stage: Stage,
    /// Every problem found.
    pub message: String,
}

impl BuildFailure {
    /// A failure at `stage`.
    pub fn new(stage: Stage, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
        }
    }
}

/// A unit's start, stop or handover failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

impl UnitError {
    /// An error with `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}
