//! [`Observer`]: what the runtime shows without asking an actor.
//!
//! Status ([`Runtime::status`](super::Runtime::status)) asks the Supervisor, so it waits its
//! turn behind a reload. What a scrape, a poll or a fleet agent reads often (the live config,
//! how replaced engines retired, what each pipeline served) is kept in lock-free places the
//! runtime shares with its actors, and read here directly: a borrowed handle, nothing copied
//! until a getter is called.

use std::sync::Arc;

use swapvisor_actors::{RetirementStatus, Slot};

use super::configs::ConfigHistory;
use crate::config::Config;
use crate::engine::{Engine, EngineContext, RequestMetrics};

/// The runtime's cheap getters, made by [`Runtime::observe`](super::Runtime::observe).
#[derive(Clone, Copy)]
pub struct Observer<'a> {
    slot: &'a Slot<Engine>,
    context: &'a EngineContext,
    configs: &'a ConfigHistory,
}

impl std::fmt::Debug for Observer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("generation", &self.slot.generation())
            .finish_non_exhaustive()
    }
}

impl<'a> Observer<'a> {
    pub(super) fn new(
        slot: &'a Slot<Engine>,
        context: &'a EngineContext,
        configs: &'a ConfigHistory,
    ) -> Self {
        Self {
            slot,
            context,
            configs,
        }
    }

    /// How the replaced engines retired so far (drained and stopped): cheap enough to poll
    /// while waiting for a start-first swap's old engine to finish.
    pub fn retirements(&self) -> RetirementStatus {
        self.slot.retirements()
    }

    /// The config the live engine runs, as written (`${VAR}` references unexpanded), with its
    /// generation; `None` while nothing serves.
    pub fn live_config(&self) -> Option<(u64, Arc<Config>)> {
        let engine = self.slot.current()?;
        let generation = self.slot.generation()?;
        Some((generation, engine.config().clone()))
    }

    /// The config the generation before the live one ran, as written, with that generation;
    /// `None` before the first reload that activated.
    pub fn previous_config(&self) -> Option<(u64, Arc<Config>)> {
        self.configs.previous()
    }

    /// What each pipeline served, counted across reloads.
    pub fn requests(&self) -> &'a RequestMetrics {
        self.context.requests()
    }
}
